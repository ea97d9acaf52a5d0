"""Leave-one-glass-out over seeds: each held-out glass's r per seed, and per seed the mean and worst
glass (and the mean R²), then their mean ± std over seeds (docs/notes/new-glasses.md#logo-seeds).

    python docs/notes/scripts/logo_seeds.py mlruns/checkpoints/cv-tp-groups/train*-s*/test/predictions.csv \
        mlruns/checkpoints/cv-tp/train*-s*/test/predictions.csv mlruns/cv/cv-tp-groups/twins/*-s*/predictions.csv

Each argument is a predictions.csv that mgglass.cv (a fold's held-out glass) or `mgglass.test --out DIR`
(the twin a grouped fold also held out) wrote; the seed is read from the path (``-s<seed>``), the glass
from the file's ``glass`` column. Every seed must cover the same glasses.
"""

import re
import statistics
import sys
from collections import defaultdict

import pandas as pd

from mgglass.metrics import pooled_metrics

r = defaultdict(dict)  # seed -> glass -> r
r2 = defaultdict(dict)  # seed -> glass -> R²
for path in sys.argv[1:]:
    seed = int(re.findall(r"-s(\d+)", path)[-1])
    df = pd.read_csv(path)
    for glass, g in df.groupby("glass"):
        m = pooled_metrics(g.eb_ev.to_numpy(copy=True), g.eb_pred_ev.to_numpy(copy=True))
        r[seed][glass.removesuffix(".pickle")], r2[seed][glass.removesuffix(".pickle")] = m["r"], m["r2"]
glasses = sorted(next(iter(r.values())))
if any(sorted(v) != glasses for v in r.values()):
    sys.exit(f"logo_seeds: the seeds cover different glasses: { {s: sorted(v) for s, v in r.items()} }")
print("| seed | " + " | ".join(glasses) + " | mean | worst | mean R² |")
print("|---" * (len(glasses) + 4) + "|")
means, worsts, r2s = [], [], []
for seed in sorted(r):
    vals = [r[seed][g] for g in glasses]
    means.append(statistics.mean(vals))
    worsts.append(min(vals))
    r2s.append(statistics.mean(r2[seed].values()))
    print(f"| {seed} | " + " | ".join(f"{v:.3f}" for v in vals)
          + f" | {means[-1]:.3f} | {worsts[-1]:.3f} ({glasses[vals.index(worsts[-1])]}) | {r2s[-1]:.3f} |")
if len(r) > 1:
    cols = [[r[s][g] for s in r] for g in glasses]
    print("| mean ± std | " + " | ".join(f"{statistics.mean(c):.3f} ± {statistics.stdev(c):.3f}" for c in cols)
          + f" | {statistics.mean(means):.3f} ± {statistics.stdev(means):.3f} | {statistics.mean(worsts):.3f} ± {statistics.stdev(worsts):.3f}"
          + f" | {statistics.mean(r2s):.3f} ± {statistics.stdev(r2s):.3f} |")
