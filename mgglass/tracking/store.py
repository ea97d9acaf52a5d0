"""The MLflow store of mgglass runs: where it is (:class:`TrackingConfig`), opening it safely across
processes, experiments, the run folder's ``mlflow_run.json``, and the metric names the UI groups."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mgglass.runtime import machine

RUN_FILE = "mlflow_run.json"
DEFAULT_ROOT = "mlruns"

# MLflow's UI groups a run's charts by the part of a metric's name before the first "/", so the
# task's names (val_r, train_loss, sym_reflect_p, ...) are stored as val/r, train/loss, sym/reflect_p;
# lr and the epoch time go with train. The CLI, monitors and checkpoints keep the task's names.
UI_GROUPS = ("train", "val", "test", "sym")
UI_RENAMES = {"lr": "train/lr", "epoch_time_s": "train/epoch_time_s"}


def ui_name(key: str) -> str:
    """The MLflow name of the task's metric ``key``: ``val_r`` → ``val/r``."""
    head, sep, rest = key.partition("_")
    return UI_RENAMES.get(key) or (f"{head}/{rest}" if sep and head in UI_GROUPS else key)


def stored_metric(metrics: dict, key: str, default=None):
    """A run's metric by the task's name, from runs logged before (``val_r``) or after (``val/r``) the rename."""
    return metrics.get(ui_name(key), metrics.get(key, default))


def stored_history(client, run_id: str, key: str) -> list:
    """A run's metric history by the task's name, under either spelling (see :func:`stored_metric`)."""
    return [m for name in dict.fromkeys((ui_name(key), key)) for m in client.get_metric_history(run_id, name)]


@dataclass
class TrackingConfig:
    """Where runs go.

    Args:
        root: folder holding the default MLflow store (``mlflow.db``), its artifacts and the fit
            checkpoints (``checkpoints/<run_name>``).
        tracking_uri: MLflow tracking URI; None: $MLFLOW_TRACKING_URI, else ``sqlite:///<root>/mlflow.db``.
        experiment: MLflow experiment name.
        run_name: run name and checkpoint sub-folder; None: the stem of the last --config file.
        enabled: False: no MLflow at all (checkpoints are still written).
        system_metrics: seconds between samples of CPU, memory, GPU, disk and network use for the
            run's "System metrics" tab (MLflow's monitor; 0: off).
        parent_run_id: an MLflow run this fit's run nests under in the UI (a cross-validation's or
            sweep's parent run; set by them).
        tags: extra MLflow tags of the run (e.g. a cross-validation names its fold).
    """

    root: str = DEFAULT_ROOT
    tracking_uri: str | None = None
    experiment: str = "mgglass"
    run_name: str | None = None
    enabled: bool = True
    system_metrics: float = 10.0
    parent_run_id: str | None = None
    tags: dict[str, str] | None = None


def resolve_tracking_uri(cfg: TrackingConfig) -> str:
    uri = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{cfg.root}/mlflow.db"
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return uri


@contextlib.contextmanager
def store_init_lock(uri: str):
    """Serialise the first opening of a SQLite store across processes: MLflow creates and migrates
    the schema on first use, and two fits starting together on a fresh ``mlflow.db`` raced on it
    ("duplicate column name: step")."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    lock = Path(uri[len("sqlite:///") :] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def open_client(uri: str):
    """An MlflowClient whose store exists (created under :func:`store_init_lock`)."""
    from mlflow.tracking import MlflowClient

    with store_init_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # opens, creates and migrates the store now
    return client


def artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts beside a SQLite store (``<db folder>/artifacts/<experiment>``); None: the server's default."""
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).parent.resolve() / "artifacts" / experiment
        return folder.as_uri()
    return None


EXPERIMENT_KIND = "mlflow.experimentKind"


def experiment_id(client, uri: str, name: str) -> str:
    """The id of MLflow experiment ``name``, created (artifacts beside a SQLite store) if new. It is
    marked as model training, so MLflow 3's UI opens it on its runs table, not the GenAI views."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        exp_id = client.create_experiment(name, artifact_location=artifact_location(uri, name))
    else:
        exp_id = exp.experiment_id
    if exp is None or EXPERIMENT_KIND not in exp.tags:
        client.set_experiment_tag(exp_id, EXPERIMENT_KIND, "custom_model_development")
    return exp_id


def git_commit() -> str:
    here = Path(__file__).resolve().parents[2]  # the checkout that holds mgglass/
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance_tags() -> dict[str, str]:
    """Tags that say where a run's numbers come from: the commit and the machine (wall times, and the
    float rounding of results, belong to a CPU; :func:`mgglass.runtime.machine`)."""
    return {"git_commit": git_commit(), "machine": machine()}


def add_machine(client, run) -> None:
    """A reopened run continued on this machine: its ``machine`` tag names both (``A | B``), since its
    wall times are now two machines'. Runs from before the tag are left without it."""
    here, before = machine(), run.data.tags.get("machine")
    if before and here not in before.split(" | "):
        client.set_tag(run.info.run_id, "machine", f"{before} | {here}")


def flatten(d, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(d, dict):
        if not d and prefix:
            out[prefix] = "{}"
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(d, list) and d and any(isinstance(x, (dict, list)) for x in d):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}.{i}"))
    else:
        out[prefix] = json.dumps(d) if isinstance(d, list) else str(d)
    return out


def read_run_file(folder: str | Path) -> dict | None:
    path = Path(folder) / RUN_FILE
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None
    return None
