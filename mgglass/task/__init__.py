"""The LightningModules that predict per-atom energy barriers, and loading them back from checkpoints.

- :mod:`mgglass.task.ebtask`: :class:`EBTask`, the one module that trains, validates, tests and
  predicts with any registry model;
- :mod:`mgglass.task.checkpoints`: a fit's checkpoint back to an ``EBTask`` with its fit's data
  settings, and glass files read as that fit read them;
- :mod:`mgglass.task.ensemble`: several tasks predicting as one (the members' mean and spread,
  and a calibrated ``eb_sigma``).
"""

from mgglass.task.checkpoints import (
    PredictError,
    fit_graph,
    graph_settings,
    load_task,
    read_fit_glass,
    read_graph,
    resolve_device,
)
from mgglass.task.ebtask import SPLITS, EBTask, paper_adam
from mgglass.task.ensemble import (
    EnsembleError,
    EnsembleTask,
    load_models,
    predictive_std,
    residual_std,
    score_members,
    uncertainty_scores,
)

__all__ = ["SPLITS", "EBTask", "EnsembleError", "EnsembleTask", "PredictError", "fit_graph", "graph_settings", "load_models",
           "load_task", "paper_adam", "predictive_std", "read_fit_glass", "read_graph", "residual_std", "resolve_device", "score_members",
           "uncertainty_scores"]
