"""MLflow tracking for fits: one run per fit, resumable after a crash, rank 0 only.

The tracker talks to MLflow through ``MlflowClient`` (no Lightning logger), so it controls exactly
what is written and when:

* per-epoch metrics are keyed by ``step = epoch``. The task keeps an epoch history inside every
  checkpoint; the tracker writes each epoch once, right after the checkpoint that contains it was
  saved (:class:`mgglass.callbacks.AfterCheckpoint`), and a resumed fit back-fills epochs the killed process had
  checkpointed but not yet written — so no epoch is lost or duplicated.
* the run id lives in ``<checkpoint dir>/mlflow_run.json``; resuming from a checkpoint in that
  folder reopens the same run.
* each run gets its own resolved config artifact (LightningCLI's SaveConfigCallback is disabled).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from mgglass.callbacks import AfterCheckpoint
from mgglass.compat import SystemMetrics
from mgglass.outputs import to_atoms, write_split_outputs
from mgglass.plots import symmetry_plot
from mgglass.tracking.store import (
    RUN_FILE,
    TrackingConfig,
    add_machine,
    experiment_id,
    open_client,
    provenance_tags,
    read_run_file,
    resolve_tracking_uri,
    stored_history,
    ui_name,
)


class MLflowTracker(AfterCheckpoint):
    """Rank-0 MLflow bookkeeping for one fit (then its test) — see the module docstring.

    Args:
        cfg: the ``tracking`` section of the config.
        ckpt_dir: the fit's checkpoint folder (holds ``mlflow_run.json``).
        resume: reopen the run recorded in ``ckpt_dir`` (when resuming from a checkpoint there).
        params: flat resolved hyperparameters (logged once, when the run is created).
        config_yaml: the resolved config, logged as ``config.yaml``.
        tags: extra tags (model, data hash, seed, ...); the git commit is added here.
    """

    def __init__(
        self,
        cfg: TrackingConfig,
        ckpt_dir: str | Path,
        resume: bool = False,
        params: dict[str, str] | None = None,
        config_yaml: str = "",
        tags: dict[str, str] | None = None,
        species: list[str] | None = None,
    ):
        self.cfg = cfg
        self.ckpt_dir = Path(ckpt_dir)
        self.resume = resume
        self.params = params or {}
        self.config_yaml = config_yaml
        self.tags = dict(tags or {})
        self.species = list(species or ["Cu", "Zr"])
        self.client = None
        self.run_id: str | None = None
        self.uri: str | None = None
        self._logged: set[int] = set()
        self._monitor = None

    # -- run lifecycle -------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.client is not None or not trainer.is_global_zero:
            return
        self.uri = resolve_tracking_uri(self.cfg)
        self.client = open_client(self.uri)
        previous = read_run_file(self.ckpt_dir) if self.resume else None
        if previous and previous.get("tracking_uri") == self.uri:
            self.run_id = previous["run_id"]
            run = self.client.get_run(self.run_id)
            if run.info.status != "RUNNING":
                self.client.update_run(self.run_id, status="RUNNING")
            self._logged.update(int(m.step) for m in stored_history(self.client, self.run_id, "train_loss"))
            self.client.set_tag(self.run_id, "resumed", str(int(run.data.tags.get("resumed", "0")) + 1))
            add_machine(self.client, run)  # wall times after this epoch may be another machine's
            return
        self._create_run()
        self._log_glasses(getattr(trainer, "datamodule", None))  # None: a Trainer fitted without a datamodule

    def _log_glasses(self, datamodule) -> None:
        """Each glass of the split as an MLflow dataset input of the run (the UI's "Datasets"), tagged
        with its split as the context."""
        # mlflow loads slowly: imported only when a run logs
        from mlflow.entities import Dataset, DatasetInput, InputTag

        digests = getattr(datamodule, "file_digests", None)
        inputs = [DatasetInput(Dataset(name=path.name, digest=digest[:16], source_type="local",
                                       source=json.dumps({"uri": str(Path(path).resolve())})),
                               tags=[InputTag("mlflow.data.context", split)])
                  for split, path, digest in (digests() if digests else [])]
        if inputs:
            self.client.log_inputs(self.run_id, datasets=inputs)

    def _create_run(self, extra_tags: dict[str, str] | None = None) -> None:
        from mlflow.entities import Param

        exp_id = experiment_id(self.client, self.uri, self.cfg.experiment)
        # The machine and threads with the commit: a fit's wall times mean nothing without them.
        tags = {**provenance_tags(), "torch_threads": str(torch.get_num_threads()),
                **(self.cfg.tags or {}), **self.tags, **(extra_tags or {})}
        if self.cfg.parent_run_id:
            tags.setdefault("mlflow.parentRunId", self.cfg.parent_run_id)  # nests the run in the UI
        run = self.client.create_run(exp_id, run_name=self.cfg.run_name, tags=tags)
        self.run_id = run.info.run_id
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.ckpt_dir / (RUN_FILE + ".tmp")
        tmp.write_text(json.dumps({"run_id": self.run_id, "experiment_id": exp_id, "tracking_uri": self.uri}))
        tmp.replace(self.ckpt_dir / RUN_FILE)
        items = [Param(k[:250], v[:6000]) for k, v in sorted(self.params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])
        if self.config_yaml:
            self.client.log_text(self.run_id, self.config_yaml, "config.yaml")

    def on_fit_start(self, trainer, pl_module) -> None:
        self._supersede_stale_history(pl_module)
        self._start_monitor()

    def _start_monitor(self) -> None:
        if self.client is None or not self.cfg.system_metrics or self._monitor is not None:
            return
        self._monitor = SystemMetrics(self.run_id, self.cfg.system_metrics, self.resume, self.uri)
        self._monitor.start()

    def _stop_monitor(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is None:
            return
        monitor.finish()  # publishes what it sampled even when the run was shorter than an interval

    def _supersede_stale_history(self, pl_module) -> None:
        # A resume from a checkpoint older than what the run already logged (e.g. a best checkpoint,
        # or a last.ckpt from before this fix): the logged epochs after it belong to a model that no
        # longer exists. MLflow cannot delete metric points, so the continuing model gets a run of its
        # own, holding its history up to the checkpoint; the old run is closed and points to it.
        if self.client is None or not self.resume:
            return
        newest = max(getattr(pl_module, "history", {}), default=-1)
        stale = sorted(e for e in self._logged if e > newest)
        if not stale:
            return
        old = self.run_id
        self.client.set_tag(old, "superseded_by_resume_at_epoch", str(newest))
        self._create_run({"resumed_from_run": old, "resumed_at_epoch": str(newest), "resumed": "1"})
        self.client.set_tag(old, "superseded_by", self.run_id)
        self.client.set_terminated(old, status="KILLED")
        self._logged = set()
        self._flush(pl_module)

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self.client is not None and self.run_id:
            self._stop_monitor()
            self._flush(pl_module)
            status = "KILLED" if isinstance(exception, KeyboardInterrupt) else "FAILED"
            self.client.set_terminated(self.run_id, status=status)

    # -- per-epoch metrics ---------------------------------------------------------------------
    def _flush(self, pl_module) -> None:
        """Write every epoch of the task's history not yet in MLflow, each as step = epoch."""
        if self.client is None:
            return
        from mlflow.entities import Metric

        history = getattr(pl_module, "history", {})
        for epoch in sorted(history):
            if epoch in self._logged:
                continue
            ts = int(time.time() * 1000)
            metrics = [Metric(ui_name(k), float(v), ts, epoch) for k, v in history[epoch].items() if np.isfinite(v)]
            self.client.log_batch(self.run_id, metrics=metrics)
            self._logged.add(epoch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._flush(pl_module)  # runs after this epoch's checkpoint was saved (see AfterCheckpoint)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._flush(pl_module)  # after a resume: epochs the killed process checkpointed but did not log

    def on_train_end(self, trainer, pl_module) -> None:
        self._flush(pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._flush(pl_module)  # also when a resumed fit had no epochs left to run

    # -- test: metrics, per-atom predictions, parity plot --------------------------------------
    def on_test_end(self, trainer, pl_module) -> None:
        if self.client is None:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        step = int(max(pl_module.history, default=0))  # the tested checkpoint's epoch
        test = pl_module.last_metrics.get("test", {})
        model_id, logged_before = self._log_model(getattr(trainer, "ckpt_path", None), getattr(trainer, "datamodule", None), step)
        if not logged_before:  # a finished fit run again tests the same checkpoint: its metrics are there already
            # Linked to the logged model too, so the UI's "Logged models" table shows its test metrics.
            self.client.log_batch(self.run_id, metrics=[Metric(ui_name(k), float(v), ts, step, model_id=model_id) for k, v in test.items()])
        # The run's description in the UI: what was trained on what, and what it reached.
        val_r = pl_module.history.get(step, {}).get("val_r", float("nan"))
        self.client.set_tag(self.run_id, "mlflow.note.content", (
            f"{self.tags.get('model', 'model')} (seed {self.tags.get('seed', '?')}) on {self.tags.get('data_files', 'its data')}: "
            f"selected epoch {step} (val r {val_r:.3f}); test r {test.get('test_r', float('nan')):.3f}, "
            f"MAE {test.get('test_mae', float('nan')):.3f} eV"
        ))
        dm = trainer.datamodule
        if dm is None or "test" not in getattr(dm, "graphs", {}):
            return
        out = self.ckpt_dir / "test"
        write_split_outputs(out, pl_module, dm.graphs["test"], self.species, self.tags.get("model", ""))
        for name in ("predictions.csv", "predictions.extxyz", "parity.png"):
            if (out / name).is_file():
                self.client.log_artifact(self.run_id, str(out / name), "test")
        # Where the tested model's distribution over O(3) puts its samples (SymGNN only).
        encoder = getattr(getattr(pl_module, "net", None), "edge_encoder", None)
        if getattr(encoder, "distribution", None) not in (None, "none"):
            path = self.ckpt_dir / "symmetry_angles.png"
            symmetry_plot(path, encoder)
            self.client.log_artifact(self.run_id, str(path), "symmetry")

    def _log_model(self, ckpt_path, datamodule, step: int) -> tuple[str | None, bool]:
        """The tested (validation-selected) checkpoint as an MLflow logged model of the run, for the UI's
        "Logged models": the checkpoint file itself (no re-pickling), its ``config.yaml`` and an input
        example, the first test glass as extxyz (what ``mgglass.predict --input`` reads). Returns (its
        id, whether the run had logged it before: a finished fit run again reuses it); (None, False)
        when the test ran on no checkpoint file."""
        if not ckpt_path or not Path(ckpt_path).is_file():
            return None, False
        from ase.io import write
        from mlflow.entities import LoggedModelOutput

        experiment = self.client.get_run(self.run_id).info.experiment_id
        for lm in self.client.search_logged_models([experiment], filter_string=f"source_run_id = '{self.run_id}'"):
            if lm.params.get("checkpoint") == Path(ckpt_path).name and lm.params.get("selected_epoch") == str(step):
                return lm.model_id, True
        model = self.client.create_logged_model(
            experiment, name=self.cfg.run_name or self.tags.get("model") or "model", source_run_id=self.run_id,
            params={"model": self.tags.get("model", ""), "selected_epoch": str(step), "checkpoint": Path(ckpt_path).name},
            model_type="mgglass checkpoint")
        self.client.log_model_artifact(model.model_id, str(ckpt_path))
        with tempfile.TemporaryDirectory() as tmp:
            if self.config_yaml:
                (Path(tmp) / "config.yaml").write_text(self.config_yaml)
            glasses = getattr(datamodule, "graphs", {}).get("test") or []
            if glasses:
                write(Path(tmp) / "input_example.extxyz", to_atoms(glasses[0], self.species, {}), format="extxyz")
            self.client.log_model_artifacts(model.model_id, tmp)
        self.client.finalize_logged_model(model.model_id, "READY")
        self.client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, step)])  # the run page's "Logged models"
        return model.model_id, False

    def finish(self, checkpoint_paths: list[str | Path] = (), status: str = "FINISHED", tags: dict[str, str] | None = None) -> None:
        """Log the best/last checkpoints, set ``tags`` and close the run (rank 0; no-op elsewhere)."""
        if self.client is None:
            return
        self._stop_monitor()
        for key, value in (tags or {}).items():
            self.client.set_tag(self.run_id, key, value)
        for path in checkpoint_paths:
            if path and Path(path).is_file():
                self.client.log_artifact(self.run_id, str(path), "checkpoints")
        self.client.set_terminated(self.run_id, status=status)
