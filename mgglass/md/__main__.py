"""python -m mgglass.md {quench,compare,propensity,barriers,pool}: LAMMPS-backed glasses, the MD baseline and saddle searches.

    python -m mgglass.md quench --composition Cu64Zr36 --atoms 3000 --seed 0 --out glass.extxyz [--quench-ps 100]
    python -m mgglass.md compare GLASS [GLASS ...] [--png rdf.png]
    python -m mgglass.md propensity --glass test0.pickle [--temperature 600 --time-ps 10 --runs 8] --out prop.csv
    python -m mgglass.md barriers --glass glass.extxyz (--atoms 0,5,17 | --n 50) [--events 3] --out eb.csv
    python -m mgglass.md pool eb_seed0.csv eb_seed1.csv [--stat mean] --out eb.csv

``quench`` writes the glass as extxyz with the per-atom potential energy (``pot``, eV) and the
recipe in its info line; ``compare`` prints density and the partial RDFs' first peaks (JSON, one
line per glass) and plots the RDFs; ``propensity`` writes per-atom dynamic propensity (Å²) and, for
a labelled glass, prints its Pearson r with the EB; ``barriers`` runs ART-style saddle searches
(mgglass.md.saddle) and writes per-atom barriers, with their Pearson r against the glass's labels when
it has them; ``pool`` merges barriers CSVs of the same glass (runs with other seeds) into more events
per atom. All but ``compare`` and ``pool`` need the ``md`` extra (``make install-md``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
from pathlib import Path, PurePath

import numpy as np

from mgglass.data import GlassDataError, glass_names, read_glass
from mgglass.md.engine import MDError, MDUnavailable
from mgglass.md.propensity import propensity
from mgglass.md.quench import quench
from mgglass.md.saddle import atom_row, barriers
from mgglass.md.structure import plot_rdfs, summary

PROG = "mgglass.md"


def _read(path: str):
    return read_glass(Path(path), labels_optional=True)


def cmd_quench(args) -> int:
    from ase.io import write

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
    if args.png and Path(args.png).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ValueError(f"--png {args.png}: expected a .png (or .pdf, .svg) file name")
    glasses = {}
    for path, name in zip(args.glasses, glass_names([Path(p) for p in args.glasses])):  # runA/final, runB/final
        glasses[str(PurePath(name).with_suffix(""))] = glass = _read(path)
        print(json.dumps({"glass": path, **summary(glass)}), flush=True)
    if args.png:
        plot_rdfs(Path(args.png), glasses)
    return 0


def cmd_propensity(args) -> int:
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
    for name in ("n", "events", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, not {getattr(args, name)}")
    if not (args.fmax > 0):
        raise ValueError(f"--fmax must be a positive force (eV/Å), not {args.fmax}")
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
    settings = {"glass": str(Path(args.glass).resolve()), "atoms": atoms, "events": args.events, "seed": args.seed,
                "stat": args.stat, "fmax": args.fmax}
    done = _finished_barriers(out, settings)  # a rerun continues: each atom's searches have their own seed
    todo = [a for a in atoms if a not in done]
    with contextlib.ExitStack() as stack:
        f = writer = None

        def save(row: dict) -> None:  # row by row, so a killed run keeps the atoms it finished
            nonlocal f, writer
            if glass.labels is not None:
                row = {**row, "eb_label_ev": float(glass.labels[row["atom"]])}
            if writer is None:  # the file appears with the first finished atom, not before
                f = stack.enter_context(open(out, "a" if done else "w", newline=""))
                writer = csv.DictWriter(f, list(row))
                if not done:
                    writer.writeheader()
            writer.writerow(row)
            f.flush()

        new, info = barriers(glass, todo, args.events, args.seed, args.stat, args.threads, on_row=save, fmax=args.fmax) if todo else ([], {})
    by_atom = {**done, **{r["atom"]: r for r in new}}
    rows = [by_atom[a] for a in atoms]
    info = {**info, "atoms": len(atoms), "events_per_atom": args.events, "stat": args.stat, "seed": args.seed, "resumed_atoms": len(done)}
    result = {"glass": args.glass, **info, "out": str(out), "accepted_events": sum(r["accepted"] for r in rows)}
    if glass.labels is not None:
        result.update(_label_scores(rows, {r["atom"]: float(glass.labels[r["atom"]]) for r in rows}))
    print(json.dumps(result), flush=True)
    return 0


def _finished_barriers(out: Path, settings: dict) -> dict[int, dict]:
    """The atoms an earlier run with these ``settings`` finished in ``out`` (atom -> its row's numbers);
    none for a new ``out``. The settings live beside it (``<out>.settings.json``), and an ``out`` from
    other settings, or none known, is refused rather than overwritten: it holds hours of searches."""
    meta = out.with_name(out.name + ".settings.json")
    if not out.exists():
        tmp = meta.with_name(meta.name + ".tmp")
        tmp.write_text(json.dumps(settings))
        tmp.replace(meta)
        return {}
    try:
        same = json.loads(meta.read_text()) == settings
    except (OSError, ValueError):
        same = False
    if not same:
        raise ValueError(f"--out {out}: holds barriers of another run (glass, atoms, events, seed, stat or fmax differ, or "
                         f"{meta.name} is missing); a rerun with the same options continues it: choose another --out")
    text = out.read_text(encoding="utf-8")
    if not text.endswith("\n"):  # killed while writing a row: that atom runs again
        text = text[: text.rfind("\n") + 1]
        out.write_text(text, encoding="utf-8")
    try:
        rows = [{"atom": int(r["atom"]), "accepted": int(r["accepted"]), "eb_mean": float(r["eb_mean"]), "eb_min": float(r["eb_min"])}
                for r in csv.DictReader(io.StringIO(text, newline=""))]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"--out {out}: not a barriers CSV this command wrote ({e}); choose another --out") from None
    return {r["atom"]: r for r in rows}


def _label_scores(rows: list[dict], labels: dict[int, float]) -> dict:
    """Pearson r of the atoms' mean and lowest barriers with their labels, and the means compared."""
    result = {}
    for key in ("eb_mean", "eb_min"):
        ok = [(r[key], labels[r["atom"]]) for r in rows if np.isfinite(r[key])]
        if len(ok) > 2:
            a, b = np.array(ok).T
            result[f"pearson_r_{key}"] = float(np.corrcoef(a, b)[0, 1])
            result[f"{key}_mean_ev"], result["label_mean_ev"] = float(a.mean()), float(b.mean())
    return result


POOLED = ("atom", "events", "accepted", "force_calls", "seconds", "rejected", "eb_events")


def _read_barriers_csv(path: str) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file") from None
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        missing = [k for k in POOLED if k not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not a barriers CSV with every event (no column {', '.join(missing)}; "
                             "files written before eb_events existed cannot be pooled)")
        rows = []
        for line, r in enumerate(reader, start=2):
            try:
                rows.append({"atom": int(r["atom"]), "events": int(r["events"]), "force_calls": int(r["force_calls"]),
                             "seconds": float(r["seconds"]), "rejected": [x for x in r["rejected"].split(";") if x],
                             "ok": [float(b) for b in r["eb_events"].split(";") if b],
                             "label": float(r["eb_label_ev"]) if r.get("eb_label_ev") not in (None, "") else None})
            except ValueError as e:
                raise ValueError(f"{path}, line {line}: {e}") from None
            wrong = [b for b in rows[-1]["ok"] if not (np.isfinite(b) and b > 0)]
            if wrong:  # an accepted saddle lies above the minimum
                raise ValueError(f"{path}, line {line}: eb_events holds {wrong[0]}, not a barrier (finite, above 0 eV)")
    return rows


def cmd_pool(args) -> int:
    if len({Path(c).resolve() for c in args.csvs}) < len(args.csvs):
        raise ValueError(f"{' '.join(args.csvs)}: a file is named twice; its events would count twice")
    atoms: dict[int, list[tuple[str, dict]]] = {}
    for path in args.csvs:
        for r in _read_barriers_csv(path):
            for other, o in atoms.get(r["atom"], []):
                if r["ok"] and r["ok"] == o["ok"]:
                    raise ValueError(f"{path} and {other}: atom {r['atom']} has the same barriers in both "
                                     "(the same searches, i.e. the same --seed?); pool runs of different seeds")
                if None not in (r["label"], o["label"]) and abs(r["label"] - o["label"]) > 1e-6:
                    raise ValueError(f"{path} and {other}: atom {r['atom']} has label {r['label']} in one and "
                                     f"{o['label']} in the other; these are runs on different glasses")
            atoms.setdefault(r["atom"], []).append((path, r))
    if not atoms:
        raise ValueError(f"{' '.join(args.csvs)}: no atoms in these CSVs")
    rows, labels = [], {}
    for atom in sorted(atoms):
        parts = [r for _, r in atoms[atom]]
        row = atom_row(atom, [b for r in parts for b in r["ok"]], args.stat, sum(r["events"] for r in parts),
                       sum(r["force_calls"] for r in parts), sum(r["seconds"] for r in parts),
                       [x for r in parts for x in r["rejected"]])
        label = next((r["label"] for r in parts if r["label"] is not None), None)
        if label is not None:
            labels[atom] = label
        rows.append(row)
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out}: is a folder; name the CSV to write")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]) + (["eb_label_ev"] if labels else []))
        w.writeheader()
        w.writerows({**r, **({"eb_label_ev": labels[r["atom"]]} if r["atom"] in labels else {})} for r in rows)
    tmp.replace(out)  # an input named as --out is read in full before it is replaced
    result = {"inputs": args.csvs, "atoms": len(rows), "stat": args.stat, "out": str(out),
              "events": sum(r["events"] for r in rows), "accepted_events": sum(r["accepted"] for r in rows),
              "seconds_per_event": sum(r["seconds"] for r in rows) / max(sum(r["events"] for r in rows), 1)}
    if len(labels) == len(rows):
        result.update(_label_scores(rows, labels))
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
    o = sub.add_parser("pool", help="pool barriers CSVs of one glass (runs with other --seed) into one per-atom EB")
    o.add_argument("csvs", nargs="+", help="barriers CSVs written by the barriers command")
    o.add_argument("--stat", default="mean", choices=("mean", "min"), help="the atom's EB over its pooled events")
    o.add_argument("--out", required=True, help="output .csv")
    args = p.parse_args(argv)
    try:
        commands = {"quench": cmd_quench, "compare": cmd_compare, "propensity": cmd_propensity, "barriers": cmd_barriers,
                    "pool": cmd_pool}
        return commands[args.command](args)
    except (ValueError, GlassDataError, MDUnavailable, MDError) as e:
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        return 2
    except OSError as e:  # an output that cannot be written (a folder that cannot be made, a folder named as a file)
        print(f"{PROG}: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
