"""Ensembles: several fits (seeds, cross-validation folds) predicting as one model.

The ensemble's prediction of an atom is the mean of its members' predictions (eV) and ``eb_std`` is
their spread (the sample standard deviation over members, 0 for one member). Members must build
their graphs alike (cutoff, species order, self loops): otherwise the same file would mean
different graphs to them, and that is refused.

The members' spread is not the error to expect: they share most of what they miss (and the labels
themselves carry ARTn noise of ~0.14 eV that no member can know). An ensemble calibrated on labelled
glasses none of its members trained on (``mgglass.ensemble --calibrate``) also gives ``eb_sigma``:
√(spread² + s²), where s² is the calibration glasses' mean squared error the spread leaves
unexplained (:func:`residual_std`), so that about 68 % of atoms fall within ±1 ``eb_sigma``. ``python -m mgglass.ensemble`` records a set of runs
or checkpoints as one MLflow run (members as params), so ``mgglass.predict --run`` and
``mgglass.test --run`` take it like any fit's run ([ensemble](../guide/ensemble.md)).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
from scipy.stats import spearmanr
from torch import nn

from mgglass.metrics import pooled_metrics
from mgglass.task.checkpoints import PredictError, graph_settings, load_task


class EnsembleError(ValueError):
    """Members that cannot form an ensemble, or a bad member list, said in one line."""


def combine(members: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, spread) over members' per-atom predictions: the mean and the sample std (ddof 1; zeros
    for a single member)."""
    stack = np.stack([np.asarray(m, dtype=np.float64) for m in members])
    std = stack.std(axis=0, ddof=1) if len(members) > 1 else np.zeros(stack.shape[1])
    return stack.mean(axis=0), std


def residual_std(y: np.ndarray, mean: np.ndarray, spread: np.ndarray) -> float:
    """s ≥ 0 with mean((y − mean)²) = mean(spread²) + s²: the error the members' spread leaves
    unexplained on labelled glasses (0 when the spread already covers it)."""
    res = np.asarray(y, np.float64) - np.asarray(mean, np.float64)
    return float(np.sqrt(max(0.0, np.mean(res**2) - np.mean(np.asarray(spread, np.float64) ** 2))))


def predictive_std(spread: np.ndarray, residual: float) -> np.ndarray:
    """``eb_sigma``: the members' spread and the calibrated residual s added in quadrature."""
    return np.sqrt(np.asarray(spread, np.float64) ** 2 + residual**2)


def uncertainty_scores(y: np.ndarray, p: np.ndarray, std: np.ndarray, top: float = 0.1) -> dict[str, float]:
    """How well ``std`` tells the large errors |p − y|: Spearman ρ(std, |error|); the share of the
    ``top`` fraction of atoms by error that the same fraction by std finds (chance: ``top``); and the
    share of atoms within ±1 and ±2 std of their label (a Gaussian spread would give 0.68, 0.95)."""
    err = np.abs(np.asarray(p, float) - np.asarray(y, float))
    std = np.asarray(std, float)
    k = max(1, round(top * len(err)))
    hit = len(set(np.argsort(-err)[:k]) & set(np.argsort(-std)[:k])) / k
    rho = float(spearmanr(std, err).statistic) if np.ptp(std) > 0 else float("nan")
    return {"spearman_std_abs_error": rho, f"top{round(top * 100)}_overlap": hit, "chance": top,
            "within_1std": float(np.mean(err <= std)), "within_2std": float(np.mean(err <= 2 * std))}


def score_members(y: np.ndarray, members: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict]:
    """(mean, spread, scores) of members' per-atom predictions against labels ``y``: scores are each
    member's r, the best member's r and :func:`uncertainty_scores` of the spread."""
    mean, std = combine(members)
    member_r = [pooled_metrics(y, p)["r"] for p in members]
    return mean, std, {"member_r": member_r, "best_member_r": max(member_r), "uncertainty": uncertainty_scores(y, mean, std)}


def check_members(settings: list[dict], names: list[str]) -> None:
    """Refuse members whose graphs differ: ``settings`` are each member's (species, cutoff, self_loops)
    as a dict, ``names`` say which member is which in the message."""
    if len(set(map(str, names))) != len(names):
        twice = sorted({str(n) for n in names if list(map(str, names)).count(str(n)) > 1})
        raise EnsembleError(f"{twice[0]} is named twice as an ensemble member")
    first = settings[0]
    for name, s in zip(names[1:], settings[1:]):
        for key in ("cutoff", "species", "self_loops"):
            if s.get(key) != first.get(key):
                raise EnsembleError(f"{name}: {key} {s.get(key)!r} differs from {names[0]}'s {first.get(key)!r}; "
                                    "an ensemble's members must build their graphs alike")


class EnsembleTask(L.LightningModule):
    """Member tasks (``mgglass.task.EBTask``) that predict a glass together: ``predict_step`` gives
    ``eb_pred`` (the members' mean) and ``eb_std`` (their spread), so ``mgglass.predict`` writes an
    ensemble's outputs like a single model's."""

    def __init__(self, members: list[L.LightningModule], residual: float | None = None, member_settings: list[dict] = ()):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.residual = residual  # s of a calibrated ensemble (eV): predict_step adds eb_sigma
        self.member_settings = list(member_settings)  # each member's data settings (its training glasses)

    @property
    def predict_chunk_atoms(self):
        return self.members[0].predict_chunk_atoms

    @predict_chunk_atoms.setter
    def predict_chunk_atoms(self, value) -> None:
        for m in self.members:
            m.predict_chunk_atoms = value

    predict_samples = 0  # an ensemble's spread is its members', not one model's sampled transforms

    def predict_step(self, batch, batch_idx: int = 0, dataloader_idx: int = 0) -> dict:
        mean, std = combine([m.predict_step(batch, batch_idx)["eb_pred"] for m in self.members])
        out = {"eb_pred": mean, "eb_std": std}
        if self.residual is not None:
            out["eb_sigma"] = predictive_std(std, self.residual)
        return out


def load_models(ckpts: list[Path], device: str, residual: float | None = None):
    """(one task, or an :class:`EnsembleTask` of several; the data settings they share). ``residual``:
    a calibrated ensemble's s (eV), so that it predicts ``eb_sigma`` too."""
    loaded = [load_task(c, device) for c in ckpts]
    if len(loaded) == 1:
        return loaded[0]
    settings = [dict(zip(("species", "cutoff", "self_loops"), graph_settings(hp))) for _, hp in loaded]
    try:
        check_members(settings, [str(c) for c in ckpts])
    except EnsembleError as e:
        raise PredictError(str(e)) from None
    return EnsembleTask([t for t, _ in loaded], residual, [hp for _, hp in loaded]).eval(), loaded[0][1]
