"""Writing predictions: per-atom extxyz and CSV, and the parity plot, for the fit's test outputs,
``mgglass.test --out`` and ``mgglass.predict``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mgglass.inference import predict_glass
from mgglass.metrics import pooled_metrics


def to_atoms(data, species: list[str], arrays: dict[str, np.ndarray]):
    """One glass as ase Atoms with per-atom ``arrays`` (eb, eb_pred, eb_std, ...)."""
    from ase import Atoms
    from ase.data import atomic_numbers

    numbers = np.array([atomic_numbers[s] for s in species])[data.species.numpy()]
    atoms = Atoms(numbers=numbers, positions=data.pos.numpy(), cell=data.cell[0].numpy(), pbc=True)
    for key, values in arrays.items():
        atoms.new_array(key, np.asarray(values, dtype=float))
    atoms.info["glass"] = getattr(data, "name", "glass")
    return atoms


def write_predictions(extxyz: Path, frames, csv_path: Path | None = None) -> None:
    """Frames to extxyz, and one CSV row per atom (glass, atom, species, eb_ev, eb_pred_ev[, eb_pred_network_ev, eb_std_ev, eb_sigma_ev])."""
    from ase.io import write

    extxyz.parent.mkdir(parents=True, exist_ok=True)
    write(extxyz, frames, format="extxyz")
    keys = [k for k in ("eb", "eb_pred", "eb_pred_network", "eb_std", "eb_sigma") if all(k in a.arrays for a in frames)]
    with open(csv_path or extxyz.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["glass", "atom", "species", *(f"{k}_ev" for k in keys)])
        for a in frames:
            symbols = a.get_chemical_symbols()
            columns = [a.arrays[k] for k in keys]
            for i in range(len(a)):
                w.writerow([a.info["glass"], i, symbols[i], *(f"{c[i]:.6f}" for c in columns)])


def write_split_outputs(out: Path, task, graphs, species: list[str], model: str = "") -> None:
    """Per-atom predictions of ``task`` on a split: predictions.extxyz/.csv and parity.png under ``out``."""
    frames, ys, ps = [], [], []
    for g in graphs:
        pred = predict_glass(task, g)
        y = g.y.double().numpy() if "y" in g else np.full(len(pred), np.nan)
        frames.append(to_atoms(g, species, {"eb": y, "eb_pred": pred}))
        if "y" in g:
            ys.append(y)
            ps.append(pred)
    write_predictions(Path(out) / "predictions.extxyz", frames)
    if ys:
        y, p = np.concatenate(ys), np.concatenate(ps)
        parity_plot(Path(out) / "parity.png", y, p, pooled_metrics(y, p), model)


def parity_plot(path: Path, y: np.ndarray, p: np.ndarray, stats: dict, model: str = "", split: str = "test") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.scatter(y, p, s=3, alpha=0.4, lw=0)
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("ARTn EB (eV)")
    ax.set_ylabel("predicted EB (eV)")
    ax.set_title(f"{model + ' ' if model else ''}{split}: r = {stats['r']:.3f}, MAE = {stats['mae']:.3f} eV")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
