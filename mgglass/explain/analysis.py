"""What the explanations say: which atoms to explain, where the important neighbours sit (distance
profile) and how many optimal H1 cycles the important edges lie on (paper, Sec. 5).

Positions are unwrapped around each explained atom by the minimum-image convention, exact for
distances below half the box (the profile stops there; the cycle analysis uses a ball well inside it).
"""

from __future__ import annotations

import numpy as np
import torch

SELECTIONS = ("centre", "top", "bottom", "random")
GROUPS = ("top", "middle", "bottom", "random")


def half_box_of(data) -> float:
    """Half the cell's smallest width (Å): below it, minimum-image distances are exact."""
    return float(torch.linalg.svdvals(data.cell[0].double()).min()) / 2


def relative_positions(data, atom: int) -> np.ndarray:
    """[N, 3] minimum-image displacement (Å) of every atom from ``atom``."""
    cell = data.cell[0].double()
    d = data.pos.double() - data.pos[atom].double()
    frac = d @ torch.linalg.inv(cell)
    return (d - torch.round(frac) @ cell).numpy()


def select_atoms(data, how: str, n: int, predictions: np.ndarray | None = None, seed: int = 0) -> list[int]:
    """``centre``: the ``n`` atoms nearest the centre of the cell (the paper's choice); ``top``/``bottom``:
    the ``n`` highest/lowest predicted barriers; ``random``: ``n`` atoms drawn with ``seed``."""
    if how not in SELECTIONS:
        raise ValueError(f"--select must be one of {', '.join(SELECTIONS)}, not {how!r}")
    n_atoms = data.num_nodes
    n = min(n, n_atoms)
    if how == "centre":
        cell = data.cell[0].double()
        d = data.pos.double() - cell.sum(0) / 2
        d = d - torch.round(d @ torch.linalg.inv(cell)) @ cell
        return torch.argsort(d.norm(dim=1), stable=True)[:n].tolist()
    if how == "random":
        return sorted(np.random.default_rng(seed).choice(n_atoms, n, replace=False).tolist())
    order = np.argsort(-predictions if how == "top" else predictions, kind="stable")
    return order[:n].tolist()


def edge_groups(importance: np.ndarray, eligible: np.ndarray, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Edge indices of equal-size groups among ``eligible`` edges: the ``size`` most important, those
    around the median rank, the least important, and a random draw."""
    idx = np.flatnonzero(eligible)
    size = min(size, len(idx))
    if size == 0:
        return {g: np.zeros(0, dtype=int) for g in GROUPS}
    ranked = idx[np.argsort(-importance[idx], kind="stable")]
    mid = max(0, len(ranked) // 2 - size // 2)
    return {
        "top": ranked[:size],
        "middle": ranked[mid : mid + size],
        "bottom": ranked[len(ranked) - size :],
        "random": np.sort(rng.choice(idx, size, replace=False)),
    }


SMOOTH_BINS = 1.5  # Gaussian smoothing of the distance histograms, in bins


def smooth(counts: np.ndarray, sigma_bins: float = SMOOTH_BINS) -> np.ndarray:
    x = np.arange(-int(4 * sigma_bins) - 1, int(4 * sigma_bins) + 2)
    kernel = np.exp(-0.5 * (x / sigma_bins) ** 2)
    return np.convolve(counts, kernel / kernel.sum(), mode="same")


def peaks(centres: np.ndarray, counts: np.ndarray, sigma_bins: float = SMOOTH_BINS, prominence: float = 0.1) -> list[float]:
    """Peak positions of a histogram, smoothed with a Gaussian of ``sigma_bins`` bins; a peak must
    stand ``prominence`` × the highest smoothed count above its surroundings."""
    from scipy.signal import find_peaks

    smoothed = smooth(counts.astype(float), sigma_bins)
    if smoothed.max() <= 0:
        return []
    found, _ = find_peaks(smoothed, prominence=prominence * smoothed.max())
    return [round(float(centres[i]), 2) for i in found]


def distance_profile(top: np.ndarray, every: np.ndarray, bin_width: float, r_max: float) -> dict:
    """Histograms of the distances of the top edges' atoms and of all neighbourhood atoms, their peak
    positions, and the share of each within 10 Å."""
    bins = np.arange(0.0, r_max + bin_width, bin_width)
    centres = (bins[:-1] + bins[1:]) / 2
    h_top, _ = np.histogram(top, bins)
    h_all, _ = np.histogram(every, bins)
    return {
        "bin_width": bin_width,
        "r_max": r_max,
        "centres": centres.round(4).tolist(),
        "top_counts": h_top.tolist(),
        "all_counts": h_all.tolist(),
        "peaks_top": peaks(centres, h_top),
        "peaks_all": peaks(centres, h_all),
        "top_within_10A": float(np.mean(top < 10.0)) if len(top) else float("nan"),
        "all_within_10A": float(np.mean(every < 10.0)) if len(every) else float("nan"),
    }


def group_statistics(counts: dict[str, list[int]]) -> dict:
    """Mean ± std of cycle counts per group, and a two-sided Mann–Whitney U test of top vs random."""
    from scipy.stats import mannwhitneyu

    out: dict = {}
    for g, values in counts.items():
        v = np.asarray(values, dtype=float)
        out[g] = {"n": len(v), "mean": float(v.mean()) if len(v) else float("nan"), "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan")}
    top, rnd = counts.get("top", []), counts.get("random", [])
    if len(top) and len(rnd):
        test = mannwhitneyu(top, rnd, alternative="two-sided")
        out["top_vs_random"] = {"test": "Mann-Whitney U, two-sided", "U": float(test.statistic), "p": float(test.pvalue)}
    return out
