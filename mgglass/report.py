"""python -m mgglass.report [--experiment mgglass] [--tracking_root mlruns] [--filter EXPR] [--out docs/results.md]

The reproduction table from MLflow: finished fits grouped by model and run name (a trailing
``-s<seed>`` is dropped, so the seeds of one recipe form one row), each row the mean ± std over seeds
of the test metrics at the validation-selected checkpoint, beside the paper's Table 1 (Cu64Zr36).
Sweep runs are left out. With the released data at hand, physical baselines are added: Pearson r of
the test glasses' EB with quantities that need no learning (per-atom energy and stresses stored in
the pickles, coordination number, Zr share of the first shell).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from mgglass.data import glass_to_data, read_glass
from mgglass.data.safe_pickle import safe_load
from mgglass.models import model_class
from mgglass.runtime import OutputError, output_dir
from mgglass.tracking import git_commit, open_client, stored_history, stored_metric

PROG = "mgglass.report"
# Li et al., ICML 2024, Table 1, Cu64Zr36: test Pearson r, mean ± std.
PAPER = {
    "SymGNN": ("SymGNN", 0.7859, 0.0056),
    "SchNetAtom": ("SchNet", 0.7588, 0.0088),
    "MGCN": ("MGCN", 0.7352, 0.0066),
    "EGATLength": ("EGAT (edge length)", 0.7264, 0.0063),
    "FAENet": ("FAENet", 0.6603, 0.0218),
    "Augmented": ("data augmentation", 0.6614, 0.0285),
    "GCNEdge": ("GCN + edge", 0.5123, 0.0507),
    "SymGNNNoSym": ("w/o symmetrization", 0.2669, 0.0371),
    "EGNN": ("EGNN", 0.2588, 0.0077),
    "SpeciesMLP": ("MLP", 0.0575, 0.0127),
}
FIRST_SHELL = 3.7  # Å: the first minimum of the total g(r) of Cu64Zr36 (between 3.6 and 3.8 Å)


def group_name(run_name: str) -> str:
    return re.sub(r"[-_](s|seed)\d+$", "", run_name or "run")


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def _fmt(mean: float, std: float, digits: int = 3) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if np.isfinite(std) else "")


def count_parameters(params: dict[str, str]) -> int | None:
    """Trainable parameters of the model a run's params describe (rebuilt, not loaded)."""
    import yaml

    path = params.get("model.net.class_path")
    if not path:
        return None
    prefix = "model.net.init_args."
    kwargs = {k[len(prefix) :]: yaml.safe_load(v) for k, v in params.items() if k.startswith(prefix) and "." not in k[len(prefix) :]}
    try:
        net = model_class(path)(**kwargs)
    except (ValueError, TypeError):
        return None
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def symgnn_variant(params: dict) -> str:
    """SymGNN's sampling (learned, haar, fixed, none), plus its |x| branch and cardinality when on: it
    tells SymGNN's rows apart and picks the paper's row. (SymGNN only: a recipe run of another model keeps the recipe's
    unused params.) No "|" in it: it goes into a Markdown table cell."""
    name = params.get("model.net.init_args.distribution", "")
    if params.get("model.net.init_args.edge_lengths") == "True":  # runs before the option have no param
        basis = params.get("model.net.init_args.length_basis", "0")
        name += " + lengths" + (f" in {basis} Gaussians" if basis not in ("", "0") else "")
    card = params.get("model.net.init_args.cardinality", "0.0")
    if card not in ("", "0", "0.0"):
        name += f" + cardinality {card}"
    return name


def collect(client, experiment_ids: list[str], filter_string: str = "") -> list[dict]:
    """One record per finished, tested stand-alone fit (not sweeps, cross-validations or their children)."""
    runs = client.search_runs(experiment_ids, filter_string=filter_string, max_results=5000)
    out = []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        if run.info.status != "FINISHED" or stored_metric(metrics, "test_r") is None:
            continue
        # Sweeps, cross-validations and ensembles and the fits they run score other things (a trial's
        # objective, a held-out training glass): only stand-alone fits of the official split count.
        if tags.get("mgglass_role") or "optuna_trial" in tags or "mlflow.parentRunId" in tags:
            continue
        val = [m.value for m in stored_history(client, run.info.run_id, "val_r")]
        out.append({
            "run_id": run.info.run_id,
            "group": group_name(run.info.run_name),
            "model": tags.get("model", "?"),
            "distribution": symgnn_variant(run.data.params) if tags.get("model") == "SymGNN" else "",
            "seed": tags.get("seed", "?"),
            "configs": " ".join(filter(None, [
                ",".join(Path(c).name for c in tags.get("config_files", "").split(",") if c and Path(c).name != "base.yaml"),
                tags.get("overrides", ""),
            ])),
            "commit": tags.get("git_commit", "unknown")[:7],
            "val_r": max(val) if val else float("nan"),
            "epochs": len(val),
            "test_r": stored_metric(metrics, "test_r"),
            "test_r2": stored_metric(metrics, "test_r2"),
            "test_mae": stored_metric(metrics, "test_mae"),
            "minutes": (run.info.end_time - run.info.start_time) / 60000 if run.info.end_time else float("nan"),
            "params": count_parameters(run.data.params),
        })
    return out


# What a row holds as (mean, std) over its seeds; merging pages pools and splits exactly these.
STATS = ("val_r", "test_r", "test_r2", "test_mae", "minutes")


def _by_test_r(row: dict) -> float:
    """Sort key: best mean test r first, rows without one last."""
    return -np.nan_to_num(row["test_r"][0], nan=-9)


def table_rows(records: list[dict]) -> list[dict]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["group"]), []).append(r)
    rows = []
    for (model, group), rs in groups.items():
        dist = rs[0].get("distribution", "")
        rows.append({
            "model": f"{model} ({dist})" if dist else model,
            "paper_key": "SymGNNNoSym" if model == "SymGNN" and dist == "none" else model,
            "group": group,
            "n": len(rs),
            "seeds": ",".join(sorted({r["seed"] for r in rs})),
            "epochs": ",".join(sorted({str(r["epochs"]) for r in rs}, key=int)),
            **{k: _mean_std([r[k] for r in rs]) for k in STATS},
            "params": rs[0]["params"],
            "commits": ",".join(sorted({r["commit"] for r in rs})),
            "configs": ",".join(sorted({r.get("configs", "") for r in rs} - {""})),
        })
    rows.sort(key=_by_test_r)
    return rows


def physical_baselines(data_dir: Path, files=("test0.pickle",)) -> list[tuple[str, float]]:
    """Pearson r of the EB with per-atom quantities that need no learning, pooled over ``files``."""
    columns: dict[str, list[np.ndarray]] = {}
    for name in files:
        path = data_dir / name
        raw = safe_load(path)
        glass = read_glass(path)
        y = glass.labels
        data = glass_to_data(glass, cutoff=FIRST_SHELL)
        dst = data.edge_index[1].numpy()
        cn = np.bincount(dst, minlength=len(y)).astype(float)
        zr = data.species.numpy() == 1
        zr_nb = np.bincount(dst, weights=zr[data.edge_index[0].numpy()].astype(float), minlength=len(y))
        values = {
            "eb": y,
            "per-atom potential energy (`pot`)": np.asarray(raw["pot"], float).reshape(-1),
            "per-atom pressure (`press`)": np.asarray(raw["press"], float).reshape(-1),
            "per-atom von Mises stress (`von`)": np.asarray(raw["von"], float).reshape(-1),
            f"coordination number (neighbours within {FIRST_SHELL} Å)": cn,
            f"Zr share of the first shell (< {FIRST_SHELL} Å)": np.divide(zr_nb, cn, out=np.zeros_like(cn), where=cn > 0),
            "species (Zr = 1)": zr.astype(float),
        }
        for k, v in values.items():
            columns.setdefault(k, []).append(v)
    y = np.concatenate(columns.pop("eb"))
    return [(k, float(np.corrcoef(y, np.concatenate(v))[0, 1])) for k, v in columns.items()]


def propensity_baseline(path: Path) -> dict:
    """Pearson r of −propensity with the EB from ``python -m mgglass.md propensity``'s CSV."""
    import csv

    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        prop = np.array([float(r["propensity_a2"]) for r in rows])
        eb = np.array([float(r["eb_ev"]) for r in rows])
    except (UnicodeDecodeError, KeyError, TypeError, ValueError):
        rows = []
    if len(rows) < 3 or not (np.isfinite(prop).all() and np.isfinite(eb).all()):  # r of fewer atoms is no baseline
        raise ValueError(f"{path}: not a propensity CSV of a labelled glass (needs propensity_a2 and eb_ev columns, "
                         "finite, over 3 atoms or more)")
    return {"r": float(np.corrcoef(-prop, eb)[0, 1]), "what": f"{len(rows)} atoms, {path.name}"}


def _cell_stat(cell: str) -> tuple[float, float]:
    text = cell.strip().strip("*")
    if text in ("–", ""):
        return float("nan"), float("nan")
    mean, _, std = text.partition(" ± ")
    return float(mean), float(std) if std else float("nan")


def page_rows(page: Path) -> dict:
    """The table rows of an earlier results page, parsed back into :func:`table_rows`' form.

    An MLflow store lives on one machine, and a clean clone has none; the page is what survives.
    """
    try:
        text = page.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{page}: not a results page of {PROG} (not text)") from None
    lines = text.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("| model | run group")), None)
    if header is None:
        raise ValueError(f"{page}: not a results page of {PROG} (no table of fits)")
    rows = []
    for line in lines[header + 2 :]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 12:
            raise ValueError(f"{page}: a table row has {len(cells)} columns, expected 12: {line[:60]}")
        model, group_cell, seeds_cell = cells[0], cells[1], cells[2]
        group, _, configs = group_cell.partition(" (")
        n, _, seeds = seeds_cell.partition(" (")
        base, _, dist = model.partition(" (")
        rows.append({
            "model": model, "group": group, "configs": configs.removesuffix(")"),
            "paper_key": "SymGNNNoSym" if base == "SymGNN" and dist.startswith("none") else base,
            "n": int(n), "seeds": seeds.rstrip(")"), "epochs": cells[3],
            "val_r": _cell_stat(cells[4]), "test_r": _cell_stat(cells[5]), "test_r2": _cell_stat(cells[7]),
            "test_mae": _cell_stat(cells[8]), "minutes": _cell_stat(cells[9]),
            "params": int(cells[10]) if cells[10].isdigit() else None, "commits": cells[11],
        })
    commit = re.search(r"at commit `(\w+)`", text)
    md = next((line for line in lines if line.startswith("| dynamic propensity")), None)
    return {"rows": rows, "commit": commit.group(1) if commit else "unknown", "md_line": md, "page": str(page)}


def _pool(a: tuple[float, float], na: int, b: tuple[float, float], nb: int) -> tuple[float, float]:
    """Mean ± sample std of two disjoint sets of seeds from their own means and stds."""
    (ma, sa), (mb, sb) = a, b
    n = na + nb
    mean = (na * ma + nb * mb) / n
    ss = (0.0 if na == 1 else (na - 1) * sa**2) + (0.0 if nb == 1 else (nb - 1) * sb**2) + na * nb / n * (ma - mb) ** 2
    return mean, float(np.sqrt(ss / (n - 1)))


def _unpool(a: tuple[float, float], na: int, b: tuple[float, float], nb: int) -> tuple[float, float]:
    """Mean ± sample std of the seeds of ``a`` (``na`` of them) that are not in its subset ``b`` (``nb``)."""
    (ma, sa), (mb, sb) = a, b
    n = na - nb
    mean = (na * ma - nb * mb) / n
    if n == 1:
        return mean, float("nan")
    ss = (na - 1) * sa**2 - (0.0 if nb == 1 else (nb - 1) * sb**2) - n * nb / na * (mean - mb) ** 2
    return mean, float(np.sqrt(max(ss, 0.0) / (n - 1)))


def _union(a: str, b: str) -> str:
    """Two comma lists as one, numbers in numeric order (a run without a seed tag has seed '?')."""
    items = set(a.split(",")) | set(b.split(","))
    return ",".join(sorted(items, key=lambda x: (not x.isdigit(), int(x) if x.isdigit() else 0, x)))


def merge_page(rows: list[dict], page: dict, records: list[dict] = ()) -> tuple[list[dict], int]:
    """This store's rows plus the page's: a group only on the page is kept as it stands; a group in
    both whose seeds do not overlap is pooled (the page's rounded means and stds with the store's);
    a page row whose seeds include all of the store's and more already holds them and stays; where
    they share some seeds and each has seeds of its own, the shared seeds (this store's ``records``)
    are taken out of the page's row and the rest pooled with the store's; where the store has all the
    page's seeds, its row replaces the page's. Returns the rows and how many rows used the page."""
    ours = {r["group"]: r for r in rows}
    out, used = list(rows), 0
    for old in page["rows"]:
        new = ours.get(old["group"])
        if new is None:
            out.append(old)
            used += 1
            continue
        old_seeds, new_seeds = set(old["seeds"].split(",")), set(new["seeds"].split(","))
        if new_seeds < old_seeds:  # the page was made from these fits and more: it already holds them
            out[out.index(new)] = old
            used += 1
            continue
        shared = old_seeds & new_seeds
        if shared and not old_seeds - new_seeds:  # the store holds every seed of the page's row
            continue
        if shared:  # keep only the page's own seeds: take the shared ones (this store's fits) out
            both = table_rows([r for r in records if r["group"] == old["group"] and r["seed"] in shared])
            if len(both) != 1 or both[0]["n"] != len(shared):
                print(f"{PROG}: warning: {old['group']}: seeds {','.join(sorted(old_seeds - new_seeds))} of the page "
                      "are dropped (its shared seeds could not be taken out)", file=sys.stderr)
                continue
            k = len(shared)
            old = {**old, "n": old["n"] - k,
                   **{m: _unpool(old[m], old["n"], both[0][m], k) for m in STATS}}
        na, nb = old["n"], new["n"]
        merged = {**new, "n": na + nb,
                  **{k: _union(old[k], new[k]) for k in ("seeds", "epochs", "commits")},
                  **{k: _pool(old[k], na, new[k], nb) for k in STATS}}
        out[out.index(new)] = merged
        used += 1
    out.sort(key=_by_test_r)
    return out, used


def render(rows: list[dict], physical, source: str, n_runs: int, commit: str, md: dict | None = None,
           kept: dict | None = None, n_kept: int = 0) -> str:
    """The page; ``kept`` (from :func:`page_rows`) names the earlier page ``n_kept`` of ``rows`` used."""
    lines = [
        "# Results: energy-barrier prediction on Cu64Zr36",
        "",
        (
            f"Generated by `python -m mgglass.report` on {time.strftime('%Y-%m-%d')} at commit `{commit[:7]}` from "
            f"{n_runs} finished fits in `{source}` (sweeps excluded)"
            + (f"; {n_kept} rows come from `{kept['page']}` as generated at commit `{kept['commit']}` (run groups or "
               "seeds this store does not hold, kept or pooled with its fits; the commit column says where each "
               "fit came from)" if n_kept else "")
            + ". Regenerate with `make report`."
        ),
        "",
        "Every number is the test Pearson r (pooled over all atoms of the test glasses) of the checkpoint",
        "with the best **validation** r; test data never selected a checkpoint, stopped a run or chose a",
        "setting. The released code picked checkpoints on the test set, which flatters its numbers next",
        "to ours. Mean ± std over the seeds listed (std needs ≥ 2). Time is each fit's wall time",
        "(training, validation and the final test) on the machine the run's commit names in the README.",
        "",
        "| model | run group (configs) | seeds | epochs | val r | **test r** | paper (test-selected) | test R² | test MAE (eV) | minutes | parameters | commit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paper = PAPER.get(r.get("paper_key", r["model"]))
        paper_txt = f"{paper[1]:.4f} ± {paper[2]:.4f} ({paper[0]})" if paper else "–"
        group = f"{r['group']} ({r['configs']})" if r.get("configs") else r["group"]
        lines.append(
            f"| {r['model']} | {group} | {r['n']} ({r['seeds']}) | {r['epochs']} | {_fmt(*r['val_r'])} | **{_fmt(*r['test_r'])}** | "
            f"{paper_txt} | {_fmt(*r['test_r2'])} | {_fmt(*r['test_mae'])} | {_fmt(*r['minutes'], digits=1)} | "
            f"{r['params'] if r['params'] is not None else '?'} | {r['commits']} |"
        )
    missing = [f"{label} ({v:.4f})" for cls, (label, v, _) in PAPER.items() if cls not in {r.get("paper_key", r["model"]) for r in rows}]
    if missing:
        lines += ["", "No finished fit yet (paper value): " + ", ".join(missing) + " (README, \"Reproduction table\", says why)."]
    if md:
        lines += ["", "## MD baseline (no learning)", "",
                  "| method | test r | paper |", "|---|---|---|",
                  (f"| dynamic propensity, isoconfigurational ensemble ({md['what']}; README, \"Molecular dynamics\") | "
                  f"**{md['r']:.3f}** | 0.3614 (MD local sampling) |"), ""]
    elif kept and kept["md_line"]:
        lines += ["", "## MD baseline (no learning)", "", "| method | test r | paper |", "|---|---|---|", kept["md_line"], ""]
    else:
        lines += ["", "Paper, not learned: MD local sampling 0.3614 (`--propensity CSV` adds ours).", ""]
    if physical:
        lines += [
            "## Physical baselines (no learning)",
            "",
            "Pearson r of the ARTn barrier with per-atom quantities, on the test glass (test0, 3000 atoms).",
            "",
            "| quantity | r with EB |",
            "|---|---|",
            *[f"| {k} | {v:+.3f} |" for k, v in physical],
            "",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n", 1)[1])
    p.add_argument("--experiment", action="append", help="MLflow experiment name(s) (default: mgglass)")
    p.add_argument("--tracking_root", default="mlruns")
    p.add_argument("--tracking_uri", default=None, help="default: sqlite:///<tracking_root>/mlflow.db")
    p.add_argument("--filter", default="", help="MLflow search filter, e.g. \"tags.git_commit LIKE 'abc%%'\"")
    p.add_argument("--data_dir", default=None, help="released pickles for the physical baselines (default: $MGGLASS_DATA_DIR)")
    p.add_argument("--out", default="docs/results.md")
    p.add_argument("--propensity", default=None, help="mgglass.md propensity CSV of test0: adds the MD baseline row")
    p.add_argument("--keep", default=None, metavar="PAGE",
                   help="an earlier results page (e.g. docs/results.md): keep its rows of run groups this store does not "
                        "hold, pool its seeds with the store's where they differ, keep its MD row unless --propensity")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    if out.suffix != ".md":  # the page replaces whatever --out names
        print(f"{PROG}: error: --out {out}: expected a Markdown page (.md)", file=sys.stderr)
        return 2
    try:
        output_dir(out.parent, "--out")
    except OutputError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    uri = args.tracking_uri or f"sqlite:///{args.tracking_root}/mlflow.db"
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        print(f"{PROG}: error: no MLflow store at {uri}", file=sys.stderr)
        return 2
    client = open_client(uri)
    names = args.experiment or ["mgglass"]
    exps = [client.get_experiment_by_name(n) for n in names]
    if any(e is None for e in exps):
        print(f"{PROG}: error: no experiment {[n for n, e in zip(names, exps) if e is None]} in {uri}", file=sys.stderr)
        return 2
    records = collect(client, [e.experiment_id for e in exps], args.filter)
    data_dir = Path(args.data_dir or os.environ.get("MGGLASS_DATA_DIR") or "")
    physical = physical_baselines(data_dir) if (data_dir / "test0.pickle").is_file() else []
    rows = table_rows(records)
    try:
        md = propensity_baseline(Path(args.propensity)) if args.propensity else None
        kept = page_rows(Path(args.keep)) if args.keep else None
    except (OSError, ValueError, KeyError) as e:
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    rows, n_kept = merge_page(rows, kept, records) if kept else (rows, 0)
    text = render(rows, physical, uri, len(records), git_commit(), md, kept, n_kept)
    out.write_text(text)
    print(json.dumps({"out": str(out), "runs": len(records), "rows": len(rows), "from_page": n_kept}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
