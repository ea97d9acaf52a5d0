"""Radial helpers shared by the distance-based baselines."""

import math

import torch


def cosine_cutoff(d: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Smooth switch-off at the graph cutoff, so an atom crossing it changes predictions continuously."""
    return 0.5 * (torch.cos(d * math.pi / cutoff) + 1.0) * (d < cutoff)
