"""Ensembles of unlike fold models on the glass they all held out (docs/notes/new-glasses.md#variant-ensembles).

Every variant fitted on a fold (other radii, heads, dropout, noise, auxiliary targets, another network,
...) predicted the same held-out glass; averaging their predictions asks whether models trained
differently make errors different enough to cancel. For each glass: each member's r, the default's
seed pairs, each variant paired with the default's seed 0, and every member at once.

    python docs/notes/scripts/variant_ensembles.py --default cv-tp \\
        mlruns/checkpoints/cv-*/train*-s*/test/predictions.csv mlruns/cv/cv-*/twins/*-s*/predictions.csv

Arguments are the predictions.csv files mgglass.cv writes per fold (``<tracking root>/checkpoints/<cv
name>/<glass>-s<seed>/test/``) or ``mgglass.test --out`` wrote for a grouped fold's twin
(``<tracking root>/cv/<cv name>/twins/<glass>-s<seed>/``). A member is ``<variant>-s<seed>``, the
variant being the cv name without ``-groups`` (a config's grouped and ungrouped folds are one variant).
Averaging files rather than checkpoints (``mgglass.test --ckpt_path A B``) also admits members whose
graphs differ (another cutoff), which mgglass's ensembles refuse. ``--only A,B``: just these variants;
``--same A=B``: variant A's fits count as B's (another cv name for more seeds of one config).
With ``--pairs``, per glass only the default's seed-s fit with each variant's seed-s fit (seeds matched).
"""

import argparse
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from mgglass.metrics import pooled_metrics

p = argparse.ArgumentParser()
p.add_argument("--default", required=True, help="the default's variant (its seed 0 is every pair's first member)")
p.add_argument("--only", help="comma-separated variants to keep (default: all)")
p.add_argument("--same", action="append", default=[], help="A=B: count variant A's fits as B's")
p.add_argument("--pairs", action="store_true", help="only seed-matched pairs of the default with each variant")
p.add_argument("files", nargs="+")
args = p.parse_args()
only = set(args.only.split(",")) if args.only else None
same = dict(a.split("=", 1) for a in args.same)

by_glass = defaultdict(dict)  # glass -> member -> predictions in atom order
labels = {}
for path in args.files:
    parts = Path(path).parts
    variant = parts[-4].removesuffix("-groups")
    variant = same.get(variant, variant)
    if only and variant not in only:
        continue
    seed = re.findall(r"-s(\d+)", path)[-1]
    df = pd.read_csv(path).sort_values("atom")
    glass = df.glass.iloc[0].removesuffix(".pickle")
    y = df.eb_ev.to_numpy(copy=True)
    if glass in labels and not np.array_equal(labels[glass], y):
        raise SystemExit(f"{path}: labels differ from the other files of {glass}")
    labels[glass] = y
    by_glass[glass][f"{variant}-s{seed}"] = df.eb_pred_ev.to_numpy(copy=True)


def r_of(glass, members):
    return pooled_metrics(labels[glass].copy(), np.mean([by_glass[glass][m] for m in members], 0))["r"]


if args.pairs:
    print("| glass | seed | default | variant | variant r | ensemble | best member | gain over best member |\n|---|---|---|---|---|---|---|---|")
    for glass, preds in sorted(by_glass.items()):
        for m in sorted(preds):
            variant, seed = m.rsplit("-s", 1)
            d = f"{args.default}-s{seed}"
            if variant != args.default and d in preds:
                r = {k: r_of(glass, [k]) for k in (d, m)}
                print(f"| {glass} | {seed} | {r[d]:.3f} | {variant} | {r[m]:.3f} | {r_of(glass, [d, m]):.3f} | {max(r.values()):.3f} | "
                      f"{r_of(glass, [d, m]) - max(r.values()):+.3f} |")
    raise SystemExit

for glass, preds in sorted(by_glass.items()):
    r = {m: r_of(glass, [m]) for m in preds}
    first = f"{args.default}-s0"
    if first not in preds:
        continue
    seeds = sorted(m for m in preds if m.rsplit("-s", 1)[0] == args.default)
    print(f"\n{glass}: {len(preds)} members; members' r " + ", ".join(f"{m} {v:.3f}" for m, v in sorted(r.items(), key=lambda kv: -kv[1])))
    print("| ensemble | r | best member | gain over best member |\n|---|---|---|---|")
    rows = [(f"{a} + {b}", [a, b]) for i, a in enumerate(seeds) for b in seeds[i + 1:]]
    rows += [(f"{first} + {m}", [first, m]) for m in sorted(preds) if m not in seeds]
    rows += [(f"all {len(preds)} members", sorted(preds))] if len(preds) > 2 else []
    for name, members in rows:
        best = max(r[m] for m in members)
        print(f"| {name} | {r_of(glass, members):.3f} | {best:.3f} | {r_of(glass, members) - best:+.3f} |")
