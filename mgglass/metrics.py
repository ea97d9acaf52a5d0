"""The metrics of a split, in eV over all its atoms: Pearson r, R², MAE, RMSE and Spearman ρ
(torchmetrics), the same for the task's logged metrics, tests, predictions and benchmarks; and each
glass's own r."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor
from torchmetrics import MeanSquaredError, MetricCollection
from torchmetrics.regression import (
    MeanAbsoluteError,
    PearsonCorrCoef,
    R2Score,
    SpearmanCorrCoef,
)


def split_metrics(**kwargs) -> MetricCollection:
    """The split metrics as one torchmetrics collection (``kwargs``: each metric's options)."""
    # All states are sums or concatenations, so the DDP sync is exact (no per-rank averaging).
    with warnings.catch_warnings():  # Spearman's "keeps all targets in a buffer" warning: one glass fits
        warnings.filterwarnings("ignore", message=".*will save all targets and predictions.*")
        return MetricCollection(
            {
                "r": PearsonCorrCoef(**kwargs),
                "r2": R2Score(**kwargs),
                "mae": MeanAbsoluteError(**kwargs),
                "rmse": MeanSquaredError(squared=False, **kwargs),
                "spearman": SpearmanCorrCoef(**kwargs),
            }
        )


def pooled_metrics(y, p) -> dict[str, float]:
    """The split metrics a fit logs (r, r2, mae, rmse, spearman; eV) over all atoms of labels ``y`` and
    predictions ``p``: the same torchmetrics as the task, for tests, predictions and benchmarks."""
    # This process's arrays only: no DDP sync, which would wait for ranks that never call this.
    metrics = split_metrics(sync_on_compute=False).set_dtype(torch.float64)
    p, y = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    if y.numel() < 2:  # a one-atom glass: no correlation or R² (torchmetrics raises), errors still
        err = (p - y).abs()
        return {"r": math.nan, "r2": math.nan, "mae": float(err.mean()) if len(err) else math.nan,
                "rmse": float(err.pow(2).mean().sqrt()) if len(err) else math.nan, "spearman": math.nan}
    metrics.update(p, y)
    return {k: float(v) for k, v in metrics.compute().items()}


def per_glass_r(pred: Tensor, target: Tensor, glass: Tensor | None) -> list[Tensor]:
    """Pearson r of each glass in a batch (``glass``: atom -> glass index; None: one glass), float64."""
    glass = torch.zeros_like(target, dtype=torch.long) if glass is None else glass
    out = []
    for g in torch.unique(glass):
        p, y = pred[glass == g].double(), target[glass == g].double()
        p, y = p - p.mean(), y - y.mean()
        out.append((p * y).sum() / torch.sqrt((p * p).sum() * (y * y).sum()).clamp_min(1e-300))
    return out
