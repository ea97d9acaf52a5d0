"""Every use of a library's private or undocumented API, in one place.

Each entry names what it relies on and why no public API does the job. ``tests/test_compat.py``
checks every one of them against the installed libraries (existence, signature, behaviour on a tiny
object) and fails naming the library and its version when one changes; ``setup.cfg`` caps these
libraries below their next minor release for the same reason. This module imports no mgglass module,
and imports Lightning, mlflow and optuna only inside the functions that need them (start-up).

torch's private layer bases (``nn.modules.batchnorm._BatchNorm``, ``nn.modules.dropout._DropoutNd``)
are not used at all: :data:`mgglass.models.recompute.BATCH_NORMS` and
:data:`mgglass.models.dropout.DROPOUTS` list the public classes, and the test checks they still
cover every subclass.
"""

from __future__ import annotations

from torch import nn


# -- Lightning ---------------------------------------------------------------------------------
def cli_instantiating() -> bool:
    """True while LightningCLI instantiates a LightningModule: it then hands the module's config to
    ``save_hyperparameters`` (so a checkpoint rebuilds the net from class paths). Lightning exposes
    this only as the private context variable
    ``lightning.pytorch.core.mixins.hparams_mixin._given_hyperparameters``."""
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters

    return _given_hyperparameters.get() is not None


def saves_on_train_epoch_end(checkpoint, trainer) -> bool:
    """Whether a ``ModelCheckpoint`` saves at the end of the training epoch (else after validation):
    its private ``_should_save_on_train_epoch_end``, which resolves ``save_on_train_epoch_end=None``."""
    return checkpoint._should_save_on_train_epoch_end(trainer)


def save_last_checkpoint(checkpoint, trainer) -> None:
    """Write a ``ModelCheckpoint``'s ``last.ckpt`` now, unless it already saved at this step (or is
    not fitting): Lightning does this only inside its top-k save, through the private
    ``_should_skip_saving_checkpoint``, ``_monitor_candidates`` and ``_save_last_checkpoint``."""
    if not checkpoint._should_skip_saving_checkpoint(trainer):
        checkpoint._save_last_checkpoint(trainer, checkpoint._monitor_candidates(trainer))


def averaged_module(callback) -> nn.Module | None:
    """The averaged copy of the model a ``WeightAveraging`` callback (EMA) keeps, once fitting has
    set it up; None before. Lightning keeps it in the private ``_average_model`` (an
    ``AveragedModel``, whose ``module`` is the copy)."""
    averaged = getattr(callback, "_average_model", None)
    return None if averaged is None else averaged.module


def drop_lightning_tips() -> None:
    """Keep Lightning's "💡 Tip:" lines (an advertisement for its cloud logger, printed by every Trainer
    without a LitLogger) out of mgglass's output. They come through ``rank_zero_info`` on the logger
    named after the private module ``lightning.pytorch.utilities.rank_zero``; a filter there is the
    only way to drop them without silencing Lightning's other lines."""
    import logging

    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_not_a_tip)  # once: same object


def _not_a_tip(record) -> bool:
    return not str(record.msg).startswith("💡 Tip:")


# -- Optuna ------------------------------------------------------------------------------------
def trial_id(trial) -> int:
    """A trial's storage id (``Trial._trial_id`` / ``FrozenTrial._trial_id``): what another process
    needs to report to the same trial; Optuna's public ``number`` is per study, not per storage."""
    return trial._trial_id


def trial_by_id(study, trial_id: int):
    """The running trial ``trial_id`` of ``study`` as a ``Trial`` that can report and ask the pruner,
    in another process than the one that asked for it. Optuna documents ``optuna.trial.Trial`` as not
    to be built by hand; the ask-and-tell interface hands trials out only to the asking process."""
    import optuna

    return optuna.trial.Trial(study, trial_id)


def fail_trial(study, trial_id: int) -> bool:
    """Mark a RUNNING trial FAIL through the study's private storage (``study._storage``), as Optuna's
    own heartbeat check does; True when the state changed, False when the trial had finished already
    (e.g. another sweep process on the host reaped it between listing and failing it: the storage
    raises ``optuna.exceptions.UpdateFinishedTrialError`` then). ``study.tell`` would also check
    values and log."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        return study._storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False


def frozen_trial(study, trial_id: int):
    """The current ``FrozenTrial`` of ``trial_id`` from the study's private storage."""
    return study._storage.get_trial(trial_id)


# -- MLflow ------------------------------------------------------------------------------------
class SystemMetrics:
    """CPU, memory, GPU, disk and network use of the process's machine, sampled every ``interval``
    seconds into run ``run_id`` (``system/...`` metrics, the UI's "System metrics" tab).

    The public way, ``mlflow.start_run(log_system_metrics=True)``, needs the fluent API's active run,
    which the tracker (an ``MlflowClient``) does not use; this drives MLflow's undocumented
    ``mlflow.system_metrics.system_metrics_monitor.SystemMetricsMonitor`` directly, and reads its
    private ``_logging_step`` to see whether it published anything."""

    def __init__(self, run_id: str, interval: float, resume: bool, tracking_uri: str):
        import logging

        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop chatter
        self._monitor = SystemMetricsMonitor(run_id, sampling_interval=interval, resume_logging=resume,
                                             tracking_uri=tracking_uri)
        self._first_step = self._monitor._logging_step

    def start(self) -> None:
        self._monitor.start()

    def finish(self) -> None:
        monitor = self._monitor
        monitor.finish()
        # MLflow's monitor publishes only after a full interval and drops what it sampled when the run
        # stops sooner (a short fit, or a failed status check): publish that sample so the tab is never empty.
        if monitor._logging_step == self._first_step:
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()


# -- PyTorch Geometric ---------------------------------------------------------------------------
def explain_edge_mask(layer):
    """The edge mask ``torch_geometric.explain`` set on a ``MessagePassing`` layer (``set_masks``),
    sigmoid applied when it asks for that; None when the layer is not being explained. PyG keeps
    the mask in the private ``_edge_mask``/``_apply_sigmoid`` and applies it only inside its own
    ``propagate``; mgglass's attention layers take the mask as an argument instead."""
    if not getattr(layer, "explain", False) or layer._edge_mask is None:
        return None
    mask = layer._edge_mask
    return mask.sigmoid() if layer._apply_sigmoid else mask
