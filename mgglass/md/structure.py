"""Structure checks of a glass: number density and partial radial distribution functions.

g_ab(r) = V / (N_a (N_b − δ_ab)) · n_ab(r) / (4π r² dr), with n_ab(r) the ordered pairs (atom of a,
neighbour of b) in the shell, counted from the exact periodic radius graph; the first peak is the
maximum of g_ab below ``first_shell`` Å. No LAMMPS needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mgglass.data import radius_graph_pbc
from mgglass.data.structure import Glass

PAIRS = (("Cu", "Cu"), ("Cu", "Zr"), ("Zr", "Zr"))


def partial_rdfs(glass: Glass, r_max: float = 8.0, dr: float = 0.04) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(bin centres in Å, {"Cu-Cu": g, "Cu-Zr": g, "Zr-Zr": g})."""
    g = radius_graph_pbc(torch.as_tensor(glass.positions, dtype=torch.float64), torch.as_tensor(glass.cell, dtype=torch.float64), r_max)
    symbols = np.array(glass.symbols)
    src, dst = g.edge_index.numpy()
    dist = g.edge_len.numpy()
    edges = np.arange(0.0, r_max + dr / 2, dr)
    centres = 0.5 * (edges[1:] + edges[:-1])
    shell = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    volume = abs(np.linalg.det(glass.cell))
    out = {}
    for a, b in PAIRS:
        na, nb = int((symbols == a).sum()), int((symbols == b).sum())
        sel = (symbols[dst] == a) & (symbols[src] == b)
        counts, _ = np.histogram(dist[sel], edges)
        norm = na * (nb - (a == b))
        out[f"{a}-{b}"] = volume * counts / (norm * shell) if norm > 0 else np.zeros_like(centres)
    return centres, out


def summary(glass: Glass, first_shell: float = 3.6) -> dict:
    """Number density (atoms/Å³), mass density (g/cm³) and each pair's first peak (position Å, height)."""
    from ase.data import atomic_masses

    r, gs = partial_rdfs(glass)
    volume = abs(np.linalg.det(glass.cell))
    mass = float(atomic_masses[np.asarray(glass.numbers)].sum())
    out = {"atoms": len(glass), "number_density": len(glass) / volume, "density_g_cm3": mass / volume * 1.66053906660,
           "composition": {s: float(np.mean(np.array(glass.symbols) == s)) for s in ("Cu", "Zr")}}
    inside = r < first_shell
    for pair, g in gs.items():
        i = int(np.argmax(np.where(inside, g, -np.inf)))
        out[f"{pair}_peak_r"] = float(r[i])
        out[f"{pair}_peak_g"] = float(g[i])
    return out


def plot_rdfs(path: Path, glasses: dict[str, Glass]) -> None:
    """The three partial RDFs of each named glass, one panel per pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=120, sharey=True)
    for name, glass in glasses.items():
        r, gs = partial_rdfs(glass)
        for ax, (pair, g) in zip(axes, gs.items()):
            ax.plot(r, g, lw=1, label=name)
            ax.set_title(pair)
            ax.set_xlabel("r (Å)")
    axes[0].set_ylabel("g(r)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
