"""Files an explanation leaves, and the MLflow child run that shows them under the explained fit.

``edges.csv.gz`` (edge importances: explained atom, rank, edge, its atoms, length, image shift,
importance, distances of its atoms from the explained atom, optimal cycles, group),
``neighbourhoods/atom_<i>.extxyz`` (each neighbourhood unwrapped around its atom with per-atom
``importance``, for OVITO), ``distance_profile.png``, ``cycles.png``, ``neighbourhood_3d.png`` and
``summary.json``.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np

from mgglass.tracking import open_client

from .analysis import GROUPS

COLUMNS = ["atom", "rank", "edge_id", "src", "dst", "src_species", "dst_species", "length", "shift_a", "shift_b",
           "shift_c", "importance", "src_distance", "dst_distance", "cycles", "group"]


def write_edge_table(path: Path, explained, species: list[str], table_edges: int) -> int:
    rows = 0
    with gzip.open(path, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for ex in explained:
            sub = ex.sub
            order = np.argsort(-ex.importance, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            group = {int(e): g for g in GROUPS for e in ex.groups[g]}  # an edge in two groups keeps the later
            keep = order if table_edges <= 0 else np.union1d(order[:table_edges], list(group))
            keep = keep[np.argsort(rank[keep])]
            src, dst = sub.edge_index.numpy()
            node, spc = sub.node_id.numpy(), sub.species.numpy()
            dist = np.linalg.norm(ex.rel, axis=1)
            length = sub.edge_vec.double().norm(dim=1).numpy()
            shift = sub.edge_shift.numpy()
            eid = sub.edge_id.numpy()
            for e in keep:
                s, d = src[e], dst[e]
                w.writerow([ex.atom, int(rank[e]) + 1, int(eid[e]), int(node[s]), int(node[d]), species[spc[s]], species[spc[d]],
                            f"{length[e]:.4f}", *map(int, shift[e]), f"{ex.importance[e]:.6g}", f"{dist[s]:.4f}",
                            f"{dist[d]:.4f}", int(ex.cycles[e]) if ex.cycles[e] >= 0 else "", group.get(int(e), "")])
                rows += 1
    return rows


def write_neighbourhoods(folder: Path, data, explained, species: list[str]) -> None:
    from ase import Atoms
    from ase.io import write

    folder.mkdir(parents=True, exist_ok=True)
    for stale in set(folder.glob("atom_*.extxyz")) - {folder / f"atom_{ex.atom}.extxyz" for ex in explained}:
        stale.unlink()  # an earlier run's atoms in a reused --out would read as (and be logged as) this run's
    for ex in explained:
        sub = ex.sub
        atoms = Atoms(symbols=[species[s] for s in sub.species.numpy()], positions=ex.rel + data.pos[ex.atom].double().numpy())
        atoms.new_array("importance", ex.atom_importance)
        atoms.new_array("glass_index", sub.node_id.numpy().astype(int))
        atoms.new_array("distance", np.linalg.norm(ex.rel, axis=1))
        atoms.new_array("explained", (sub.node_id.numpy() == ex.atom).astype(int))
        atoms.info.update(explained_atom=ex.atom, eb_pred=ex.prediction)
        write(folder / f"atom_{ex.atom}.extxyz", atoms, format="extxyz")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_distance_profile(path: Path, profile: dict, title: str = "") -> None:
    """Both distributions as densities, smoothed as for the peak search (raw top histogram shaded)."""
    from .analysis import SMOOTH_BINS, smooth

    plt = _pyplot()
    c, w = np.asarray(profile["centres"]), profile["bin_width"]
    top, every = np.asarray(profile["top_counts"], float), np.asarray(profile["all_counts"], float)
    top_d, all_d = top / max(top.sum(), 1) / w, every / max(every.sum(), 1) / w
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax.bar(c, top_d, width=w, color="C3", alpha=0.2, lw=0)
    ax.plot(c, smooth(all_d, SMOOTH_BINS), color="0.5", lw=1, label="all neighbourhood atoms")
    ax.plot(c, smooth(top_d, SMOOTH_BINS), color="C3", lw=1.5, label="atoms of the top-ranked edges")
    for p in profile["peaks_top"]:
        ax.axvline(p, color="C3", ls=":", lw=0.8)
        ax.text(p, ax.get_ylim()[1] * 0.92, f"{p:.1f}", color="C3", fontsize=7, ha="center")
    ax.set_xlabel("distance from the explained atom (Å)")
    ax.set_ylabel("density (1/Å)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_cycles(path: Path, counts: dict[str, list[int]], stats: dict, title: str = "") -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(GROUPS), figsize=(10, 2.8), dpi=120, sharey=True)
    top = max((max(v) for v in counts.values() if v), default=1)
    for ax, g in zip(axes, GROUPS):
        ax.hist(counts[g], bins=np.arange(-0.5, top + 1.5), color="C3" if g == "top" else "0.5")
        s = stats.get(g, {})
        ax.set_title(f"{g}: {s.get('mean', float('nan')):.2f} ± {s.get('std', float('nan')):.2f}", fontsize=9)
        ax.set_xlabel("optimal H1 cycles per edge")
    axes[0].set_ylabel("edges")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_neighbourhood(path: Path, ex, radius: float = 8.0) -> None:
    """The explained atom's surroundings within ``radius``, coloured by importance, top edges drawn."""
    plt = _pyplot()
    imp = ex.atom_importance
    dist = np.linalg.norm(ex.rel, axis=1)
    near = dist < radius
    fig = plt.figure(figsize=(5, 5), dpi=120)
    ax = fig.add_subplot(projection="3d")
    sc = ax.scatter(*ex.rel[near].T, c=imp[near], cmap="viridis", s=12 + 40 * imp[near], vmin=0, vmax=1)
    ei = ex.sub.edge_index.numpy()
    for e in ex.groups["top"]:
        a, b = ex.rel[ei[0, e]], ex.rel[ei[1, e]]
        ax.plot(*np.stack([a, b]).T, color="C3", lw=1.5)
    ax.scatter([0], [0], [0], color="k", s=80, marker="*")
    fig.colorbar(sc, ax=ax, shrink=0.6, label="importance (largest edge at the atom)")
    ax.set_title(f"atom {ex.atom}: top {len(ex.groups['top'])} edges (red)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_all(out: Path, data, explained, summary: dict, species: list[str], table_edges: int, title: str = "") -> dict:
    out.mkdir(parents=True, exist_ok=True)
    rows = write_edge_table(out / "edges.csv.gz", explained, species, table_edges)
    write_neighbourhoods(out / "neighbourhoods", data, explained, species)
    plot_distance_profile(out / "distance_profile.png", summary["distance_profile"], title)
    plot_cycles(out / "cycles.png", summary["cycle_counts"], summary["cycles"], title)
    best = max(explained, key=lambda ex: float(np.mean(ex.importance[ex.groups["top"]])) if len(ex.groups["top"]) else 0.0)
    plot_neighbourhood(out / "neighbourhood_3d.png", best)
    summary = {**summary, "edge_table_rows": rows, "most_important_neighbourhood": best.atom}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def log_child_run(parent: dict, out: Path, summary: dict, params: dict) -> str:
    """A run under the explained fit (same experiment, ``mlflow.parentRunId``), tagged ``explains``."""
    client = open_client(parent["tracking_uri"])
    fit = client.get_run(parent["run_id"])
    cyc = summary["cycles"]
    note = (f"GNNExplainer on {len(summary['atoms'])} atoms of {params.get('glass', '?')}: important atoms peak at "
            f"{', '.join(f'{p:.1f}' for p in summary['distance_profile']['peaks_top'])} Å; optimal H1 cycles per edge "
            f"top {cyc['top']['mean']:.2f} vs random {cyc['random']['mean']:.2f}.")
    run = client.create_run(fit.info.experiment_id, run_name=f"explain-{fit.info.run_name}",
                            tags={"mlflow.parentRunId": parent["run_id"], "explains": parent["run_id"], "mlflow.note.content": note})
    rid = run.info.run_id
    for k, v in params.items():
        client.log_param(rid, k, str(v)[:500])
    metrics = {f"cycles_{g}_mean": cyc[g]["mean"] for g in GROUPS if np.isfinite(cyc[g]["mean"])}
    metrics["seconds_per_atom"] = summary["seconds_per_atom"]
    if "top_vs_random" in cyc:
        metrics["cycles_top_vs_random_p"] = cyc["top_vs_random"]["p"]
    for k, v in metrics.items():
        client.log_metric(rid, k, float(v))
    client.log_artifacts(rid, str(out), "explain")
    client.set_terminated(rid)
    return rid
