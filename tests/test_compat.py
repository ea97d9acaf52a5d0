"""The library contracts of mgglass.compat: each private or undocumented API it uses, checked against
the installed library on a tiny object (no training). A failure names the library and its version:
update mgglass/compat.py for that release (and its cap in setup.cfg)."""

import contextlib
import inspect
from importlib.metadata import version

import pytest
import torch
from torch import nn

from mgglass import compat


@contextlib.contextmanager
def contract(dist: str, what: str):
    """Turn any failure inside into one loud line naming the library, its version and the API."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - whatever the library now raises is the news
        pytest.fail(f"{dist} {version(dist)} changed {what}, which mgglass/compat.py relies on: "
                    f"{type(e).__name__}: {e}", pytrace=False)


def params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


# -- Lightning -----------------------------------------------------------------------------------
@pytest.fixture
def no_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["prog"])  # LightningCLI warns when pytest's own arguments are there too


def test_lightning_cli_instantiation_is_visible_to_the_module(tmp_path, no_argv):
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    seen = []

    class Tiny(L.LightningModule):
        def __init__(self, width: int = 3):
            super().__init__()
            seen.append(compat.cli_instantiating())
            self.save_hyperparameters()
            self.layer = nn.Linear(width, 1)

    with contract("lightning", "lightning.pytorch.core.mixins.hparams_mixin._given_hyperparameters"):
        Tiny()
        cli = LightningCLI(Tiny, run=False, args=["--model.width=4"], seed_everything_default=False,
                           save_config_callback=None,
                           trainer_defaults={"logger": False, "enable_checkpointing": False,
                                             "default_root_dir": str(tmp_path)})
        assert seen == [False, True], f"cli_instantiating() gave {seen} (plain, then under LightningCLI)"
        assert cli.model.hparams["width"] == 4


def test_lightning_cli_appends_default_callbacks_after_the_configured_ones(tmp_path, no_argv):
    # MGCLI relies on this order (public, documented: trainer_defaults' callbacks are always added).
    import lightning as L
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.cli import LightningCLI

    class Tiny(L.LightningModule):
        pass

    class Mine(Callback):
        pass

    with contract("lightning", "LightningCLI(trainer_defaults={'callbacks': ...})"):
        cli = LightningCLI(Tiny, run=False, args=["--trainer.callbacks=EarlyStopping", "--trainer.callbacks.monitor=x"],
                           seed_everything_default=False, save_config_callback=None,
                           trainer_defaults={"logger": False, "callbacks": [Mine()], "default_root_dir": str(tmp_path)})
        names = [type(cb).__name__ for cb in cli.trainer.callbacks]
        assert names.index("EarlyStopping") < names.index("Mine"), names


def test_lightning_tips_come_through_the_logger_compat_filters(tmp_path, caplog):
    import logging

    import lightning as L

    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")

    def lines():  # what a Trainer logs there (filters act before caplog's handler sees a record)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=rank_zero.name):
            L.Trainer(logger=False, enable_checkpointing=False, default_root_dir=str(tmp_path), accelerator="cpu")
        return [r.getMessage() for r in caplog.records]

    rank_zero.removeFilter(compat._not_a_tip)  # another test may have added it already
    with contract("lightning", "the '💡 Tip:' line from lightning.pytorch.utilities.rank_zero"):
        assert any(m.startswith("💡 Tip:") for m in lines()), "no tip logged: drop_lightning_tips may go"
        compat.drop_lightning_tips()
        kept = lines()
        assert not any("💡 Tip:" in m for m in kept) and any("GPU available" in m for m in kept), kept


def test_lightning_model_checkpoint_private_methods(tmp_path):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    with contract("lightning", "ModelCheckpoint's private save methods"):
        assert params(ModelCheckpoint._should_skip_saving_checkpoint) == ["self", "trainer"]
        assert params(ModelCheckpoint._monitor_candidates) == ["self", "trainer"]
        assert params(ModelCheckpoint._save_last_checkpoint) == ["self", "trainer", "monitor_candidates"]
        assert params(ModelCheckpoint._should_save_on_train_epoch_end) == ["self", "trainer"]
        trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            default_root_dir=str(tmp_path))
        at_end = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_on_train_epoch_end=True)
        assert compat.saves_on_train_epoch_end(at_end, trainer) is True
        assert compat.saves_on_train_epoch_end(ModelCheckpoint(save_on_train_epoch_end=False), trainer) is False
        assert {"epoch", "step"} <= set(at_end._monitor_candidates(trainer))
        # not fitting: nothing is saved (and nothing raises)
        assert at_end._should_skip_saving_checkpoint(trainer) is True
        compat.save_last_checkpoint(at_end, trainer)
        assert not list(tmp_path.glob("*.ckpt"))


def test_lightning_weight_averaging_keeps_the_averaged_copy(tmp_path):
    import lightning as L
    from lightning.pytorch.callbacks import EMAWeightAveraging

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(3, 1)

    with contract("lightning", "WeightAveraging._average_model"):
        cb, module = EMAWeightAveraging(decay=0.9), Tiny()
        assert compat.averaged_module(cb) is None
        cb.setup(L.Trainer(logger=False, enable_checkpointing=False, default_root_dir=str(tmp_path)), module, "fit")
        averaged = compat.averaged_module(cb)
        assert isinstance(averaged, Tiny) and averaged is not module
        assert torch.equal(averaged.layer.weight, module.layer.weight)


# -- Optuna --------------------------------------------------------------------------------------
def test_optuna_trial_ids_and_storage():
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with contract("optuna", "Trial(study, trial_id), Trial._trial_id and Study._storage"):
        assert params(optuna.trial.Trial.__init__) == ["self", "study", "trial_id"]
        study = optuna.create_study(direction="maximize")
        asked = study.ask()
        tid = compat.trial_id(asked)
        assert isinstance(tid, int) and compat.trial_id(study.trials[0]) == tid
        rebuilt = compat.trial_by_id(study, tid)  # as the trial's fit process does
        rebuilt.report(0.5, 0)
        assert rebuilt.should_prune() is False
        assert compat.frozen_trial(study, tid).intermediate_values == {0: 0.5}
        assert compat.fail_trial(study, tid) is True
        assert compat.frozen_trial(study, tid).state == TrialState.FAIL
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):  # what fail_trial turns into False
            study._storage.set_trial_state_values(tid, TrialState.FAIL)
        assert compat.fail_trial(study, tid) is False  # reaped by another sweep process first: no error


# -- MLflow --------------------------------------------------------------------------------------
def test_mlflow_system_metrics_monitor_publishes_a_short_run(tmp_path):
    from mgglass.tracking import open_client

    client = open_client(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = client.create_run(client.create_experiment("compat")).info.run_id
    with contract("mlflow", "mlflow.system_metrics.system_metrics_monitor.SystemMetricsMonitor"):
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        assert {"run_id", "sampling_interval", "resume_logging", "tracking_uri"} <= set(params(SystemMetricsMonitor.__init__))
        monitor = compat.SystemMetrics(run_id, 60.0, False, f"sqlite:///{tmp_path}/mlflow.db")
        assert isinstance(monitor._monitor._logging_step, int)
        monitor.start()
        monitor.finish()  # long before the 60 s interval: still published
        keys = set(client.get_run(run_id).data.metrics)
        assert any(k.startswith("system/") for k in keys), sorted(keys)


# -- PyTorch Geometric ---------------------------------------------------------------------------
def test_pyg_message_passing_keeps_the_explainer_mask():
    from torch_geometric.explain.algorithm.utils import clear_masks, set_masks
    from torch_geometric.nn import MessagePassing

    class Slot(MessagePassing):
        pass

    slot, mask = Slot(), torch.tensor([-1.0, 0.0, 2.0])
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    with contract("torch-geometric", "MessagePassing._edge_mask/_apply_sigmoid/explain (set_masks)"):
        assert compat.explain_edge_mask(slot) is None
        set_masks(slot, mask, edge_index, apply_sigmoid=True)
        assert torch.equal(compat.explain_edge_mask(slot), mask.sigmoid())
        set_masks(slot, mask, edge_index, apply_sigmoid=False)
        assert torch.equal(compat.explain_edge_mask(slot), mask)
        clear_masks(slot)
        assert compat.explain_edge_mask(slot) is None


# -- torch ---------------------------------------------------------------------------------------
def _subclasses(cls) -> set:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _subclasses(sub)
    return {c for c in out if c.__module__.startswith("torch.nn.") and not c.__name__.startswith("_")}


@pytest.mark.parametrize("listed, base", [("BATCH_NORMS", "batchnorm._BatchNorm"), ("DROPOUTS", "dropout._DropoutNd")])
def test_torch_layer_lists_cover_the_private_bases(listed, base):
    from mgglass.models import dropout, recompute

    kinds = set(getattr(recompute if listed == "BATCH_NORMS" else dropout, listed))
    module, name = base.split(".")
    with contract("torch", f"torch.nn.modules.{base}"):
        private = getattr(getattr(nn.modules, module), name)
        missing = _subclasses(private) - kinds
        assert not missing, f"{sorted(c.__name__ for c in missing)} are not in {listed}"
        assert all(issubclass(k, private) for k in kinds)
