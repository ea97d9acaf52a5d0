"""MLflow tracking: the store (:mod:`~mgglass.tracking.store`), the per-fit tracker callback
(:mod:`~mgglass.tracking.tracker`) and run lookup (:mod:`~mgglass.tracking.runs`)."""

from mgglass.tracking.runs import (
    RESIDUAL_PARAM,
    calibrated_residual,
    checkpoints_of,
    pick_checkpoint,
    resolve_checkpoints,
    resolve_run,
)
from mgglass.tracking.store import (
    DEFAULT_ROOT,
    EXPERIMENT_KIND,
    RUN_FILE,
    TrackingConfig,
    add_machine,
    experiment_id,
    flatten,
    git_commit,
    open_client,
    provenance_tags,
    read_run_file,
    resolve_tracking_uri,
    stored_history,
    stored_metric,
    ui_name,
)
from mgglass.tracking.tracker import MLflowTracker

__all__ = ["DEFAULT_ROOT", "EXPERIMENT_KIND", "RESIDUAL_PARAM", "RUN_FILE", "MLflowTracker", "TrackingConfig",
           "add_machine", "calibrated_residual", "checkpoints_of",
           "experiment_id", "flatten", "git_commit", "open_client", "pick_checkpoint", "provenance_tags", "read_run_file",
           "resolve_checkpoints", "resolve_run", "resolve_tracking_uri", "stored_history", "stored_metric", "ui_name"]
