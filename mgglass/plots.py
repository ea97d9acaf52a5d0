"""Figures a fit logs that belong to no one step: where SymGNN's distribution over O(3) puts its samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mgglass.models.symgnn import rotation_angles


@torch.no_grad()
def symmetry_plot(path: Path, symmetrizer, n: int = 20000) -> None:
    """Histogram of the rotation angle of ``n`` transforms drawn from ``symmetrizer`` (proper rotations
    and reflections apart), over the Haar density (1 − cos θ)/π."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q = symmetrizer.sample(n, torch.Generator().manual_seed(0))
    angle, reflected = (t.cpu().numpy() for t in rotation_angles(q))
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    bins = np.linspace(0, np.pi, 46)
    ax.hist([angle[~reflected], angle[reflected]], bins=bins, density=True, stacked=True,
            label=[f"rotations ({(~reflected).mean():.0%})", f"reflections ({reflected.mean():.0%})"])
    theta = np.linspace(0, np.pi, 200)
    ax.plot(theta, (1 - np.cos(theta)) / np.pi, "k--", lw=1, label="Haar")
    ax.set_xlabel("rotation angle of det(Q)·Q (rad)")
    ax.set_ylabel("density")
    ax.set_title(f"SymGNN transforms: {symmetrizer.distribution}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
