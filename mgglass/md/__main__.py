"""python -m mgglass.md {quench,compare,propensity,barriers}: LAMMPS-backed glasses, the MD baseline and saddle searches.

    python -m mgglass.md quench --composition Cu64Zr36 --atoms 3000 --seed 0 --out glass.extxyz [--quench-ps 100]
    python -m mgglass.md compare GLASS [GLASS ...] [--png rdf.png]
    python -m mgglass.md propensity --glass test0.pickle [--temperature 600 --time-ps 10 --runs 8] --out prop.csv
    python -m mgglass.md barriers --glass glass.extxyz (--atoms 0,5,17 | --n 50) [--events 3] --out eb.csv

``quench`` writes the glass as extxyz with the per-atom potential energy (``pot``, eV) and the
recipe in its info line; ``compare`` prints density and the partial RDFs' first peaks (JSON, one
line per glass) and plots the RDFs; ``propensity`` writes per-atom dynamic propensity (Å²) and, for
a labelled glass, prints its Pearson r with the EB; ``barriers`` runs ART-style saddle searches
(mgglass.md.saddle) and writes per-atom barriers, with their Pearson r against the glass's labels when
it has them. Needs the ``md`` extra (``make install-md``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
from pathlib import Path

PROG = "mgglass.md"


def _read(path: str):
    from mgglass.data import read_glass

    return read_glass(Path(path), labels_optional=True)


def cmd_quench(args) -> int:
    from ase.io import write

    from mgglass.md.quench import quench

    out = Path(args.out)
    if out.suffix not in (".extxyz", ".xyz"):
        raise ValueError(f"--out {out}: expected an .extxyz file name")
    glass, energies, info = quench(args.composition, args.atoms, args.seed, args.quench_ps, args.melt_ps,
                                   args.melt_k, args.final_k, args.threads)
    atoms = glass.to_atoms()
    atoms.new_array("pot", energies)
    atoms.info.update({k: v for k, v in info.items() if isinstance(v, (int, float, str))})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    write(tmp, atoms, format="extxyz")
    tmp.replace(out)  # a crash never leaves half a glass under the requested name
    print(json.dumps({**info, "out": str(out)}), flush=True)
    return 0


def cmd_compare(args) -> int:
    from mgglass.md.structure import plot_rdfs, summary

    glasses = {}
    for path in args.glasses:
        glasses[Path(path).stem] = _read(path)
        print(json.dumps({"glass": path, **summary(glasses[Path(path).stem])}), flush=True)
    if args.png:
        plot_rdfs(Path(args.png), glasses)
    return 0


def cmd_propensity(args) -> int:
    import numpy as np

    from mgglass.md.propensity import propensity

    glass = _read(args.glass)
    prop, info = propensity(glass, args.temperature, args.time_ps, args.runs, args.seed, args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["atom", "species", "propensity_a2", *(["eb_ev"] if glass.labels is not None else [])])
        for i, (s, p) in enumerate(zip(glass.symbols, prop)):
            w.writerow([i, s, f"{p:.6f}", *([f"{glass.labels[i]:.6f}"] if glass.labels is not None else [])])
    result = {"glass": args.glass, **info, "out": str(out), "mean_propensity_a2": float(prop.mean())}
    if glass.labels is not None:
        from scipy.stats import spearmanr

        result["pearson_r_minus_propensity_eb"] = float(np.corrcoef(-prop, glass.labels)[0, 1])
        result["spearman_minus_propensity_eb"] = float(spearmanr(-prop, glass.labels).statistic)
        for s in sorted(set(glass.symbols)):
            m = np.array(glass.symbols) == s
            result[f"pearson_r_{s}"] = float(np.corrcoef(-prop[m], glass.labels[m])[0, 1])
    print(json.dumps(result), flush=True)
    return 0


def cmd_barriers(args) -> int:
    import numpy as np

    from mgglass.md.saddle import barriers

    glass = _read(args.glass)
    if args.atoms:
        try:
            atoms = [int(a) for a in args.atoms.split(",")]
        except ValueError:
            raise ValueError(f"--atoms {args.atoms!r}: expected comma-separated atom indices") from None
    else:
        atoms = sorted(np.random.default_rng(args.seed).choice(len(glass), min(args.n, len(glass)), replace=False).tolist())
    bad = [a for a in atoms if not 0 <= a < len(glass)]
    if bad:
        raise ValueError(f"--atoms: {bad} outside 0..{len(glass) - 1} of {args.glass}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        writer = []

        def save(row: dict) -> None:  # row by row, so a killed run keeps the atoms it finished
            if glass.labels is not None:
                row = {**row, "eb_label_ev": float(glass.labels[row["atom"]])}
            if not writer:  # the file appears with the first finished atom, not before
                f = stack.enter_context(open(out, "w", newline=""))
                writer.append((f, csv.DictWriter(f, list(row))))
                writer[0][1].writeheader()
            writer[0][1].writerow(row)
            writer[0][0].flush()

        rows, info = barriers(glass, atoms, args.events, args.seed, args.stat, args.threads, on_row=save, fmax=args.fmax)
    result = {"glass": args.glass, **info, "out": str(out), "accepted_events": sum(r["accepted"] for r in rows)}
    if glass.labels is not None:
        for key in ("eb_mean", "eb_min"):
            ok = [(r[key], glass.labels[r["atom"]]) for r in rows if np.isfinite(r[key])]
            if len(ok) > 2:
                a, b = np.array(ok).T
                result[f"pearson_r_{key}"] = float(np.corrcoef(a, b)[0, 1])
                result[f"{key}_mean_ev"], result["label_mean_ev"] = float(a.mean()), float(b.mean())
    print(json.dumps(result), flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quench", help="make a Cu–Zr glass by melt-quench")
    q.add_argument("--composition", default="Cu64Zr36", help="e.g. Cu64Zr36, Cu50Zr50, Cu80Zr20")
    q.add_argument("--atoms", type=int, default=3000)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", required=True, help="output .extxyz")
    q.add_argument("--quench-ps", dest="quench_ps", type=float, default=100.0,
                   help="cooling time from --melt-k to --final-k in ps (default 100: 1.7e13 K/s; 5 for a quick look)")
    q.add_argument("--melt-ps", dest="melt_ps", type=float, default=20.0)
    q.add_argument("--melt-k", dest="melt_k", type=float, default=2000.0)
    q.add_argument("--final-k", dest="final_k", type=float, default=300.0)
    q.add_argument("--threads", type=int, default=1, help="OpenMP threads for LAMMPS")
    c = sub.add_parser("compare", help="density and partial RDFs of glasses")
    c.add_argument("glasses", nargs="+")
    c.add_argument("--png", default=None, help="plot the partial RDFs here")
    r = sub.add_parser("propensity", help="dynamic propensity (isoconfigurational MD), the MD baseline")
    r.add_argument("--glass", required=True)
    r.add_argument("--temperature", type=float, default=600.0)
    r.add_argument("--time-ps", dest="time_ps", type=float, default=10.0)
    r.add_argument("--runs", type=int, default=8)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--out", required=True, help="output .csv")
    b = sub.add_parser("barriers", help="per-atom barriers by ART-style dimer saddle searches")
    b.add_argument("--glass", required=True)
    b.add_argument("--atoms", default=None, help="comma-separated atom indices (default: --n random atoms)")
    b.add_argument("--n", type=int, default=50)
    b.add_argument("--events", type=int, default=3, help="saddle searches per atom")
    b.add_argument("--stat", default="mean", choices=("mean", "min"), help="the atom's EB over its events")
    b.add_argument("--fmax", type=float, default=0.01, help="saddle convergence, eV/Å")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--out", required=True, help="output .csv")
    args = p.parse_args(argv)
    from mgglass.data import GlassDataError
    from mgglass.md.engine import MDError, MDUnavailable

    try:
        commands = {"quench": cmd_quench, "compare": cmd_compare, "propensity": cmd_propensity, "barriers": cmd_barriers}
        return commands[args.command](args)
    except (ValueError, GlassDataError, MDUnavailable, MDError) as e:
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
