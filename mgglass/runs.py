"""From an MLflow run id or a checkpoint to a model ready to predict: run lookup (a fit's best
checkpoint, an ensemble's or cross-validation's members), loading a checkpoint as an ``EBTask``, and
reading a glass file the way that checkpoint's fit built its graphs."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mgglass.data import glass_to_data, read_glass
from mgglass.data.structure import DEFAULT_SPECIES
from mgglass.task import EBTask
from mgglass.tracking import open_client, read_run_file


class PredictError(Exception):
    """A run, checkpoint or glass that cannot be used to predict, reported as one line."""



def resolve_run(run_id: str, tracking_root: str = "mlruns", tracking_uri: str | None = None) -> Path:
    """A fit's MLflow run id -> its best-validation checkpoint (see :func:`resolve_checkpoints`);
    an ensemble's run is refused here (commands that take one model)."""
    ckpts = resolve_checkpoints(run_id, tracking_root, tracking_uri)
    if len(ckpts) > 1:
        raise PredictError(f"run {run_id} is an ensemble of {len(ckpts)} models; this command takes one (a member's run or --ckpt_path)")
    return ckpts[0]


def resolve_checkpoints(run_id: str, tracking_root: str = "mlruns", tracking_uri: str | None = None) -> list[Path]:
    """An MLflow run id -> the checkpoints it stands for: a fit's best-validation checkpoint (the run
    folder whose mlflow_run.json names the run, else the run's ``checkpoints/`` artifact, downloaded),
    or for an ensemble or cross-validation run (``members.*`` params) each member's."""
    for run_file in sorted(Path(tracking_root).glob("checkpoints/*/mlflow_run.json")) + sorted(Path(tracking_root).glob("checkpoints/*/*/mlflow_run.json")):
        info = read_run_file(run_file.parent)
        if info and info.get("run_id") == run_id:
            return [pick_checkpoint(run_file.parent, f"run {run_id} ({run_file.parent})")]
    # mlflow loads slowly: imported only for a run that is not on disk
    from mlflow.exceptions import MlflowException

    uri = tracking_uri or f"sqlite:///{tracking_root}/mlflow.db"
    try:
        client = open_client(uri)
        run = client.get_run(run_id)
        members = sorted((k, v) for k, v in run.data.params.items() if k.startswith("members."))
        if members:
            return [_member_checkpoint(json.loads(v), k, tracking_root, tracking_uri) for k, v in members]
        folder = Path(client.download_artifacts(run_id, "checkpoints"))
    except (MlflowException, OSError) as e:
        raise PredictError(f"run {run_id}: not found in {tracking_root}/checkpoints nor in {uri} ({' '.join(str(e).split())[:200]})") from None
    return [pick_checkpoint(folder, f"run {run_id}")]


def _member_checkpoint(member: dict, key: str, tracking_root: str, tracking_uri: str | None) -> Path:
    """An ensemble member's checkpoint: the file it names, else its run's."""
    if member.get("checkpoint") and Path(member["checkpoint"]).is_file():
        return Path(member["checkpoint"])
    if not member.get("run_id"):
        raise PredictError(f"{key}: {member.get('checkpoint')}: no such checkpoint and no run to find it by")
    return resolve_run(member["run_id"], tracking_root, tracking_uri)


def pick_checkpoint(folder: Path, what: str) -> Path:
    best = sorted(folder.glob("best-*.ckpt"))
    if best:
        return best[-1]
    if (folder / "last.ckpt").is_file():
        return folder / "last.ckpt"
    raise PredictError(f"{what}: no checkpoint in {folder}")


def load_task(ckpt: Path, device: str):
    """(EBTask on ``device`` in eval mode, data settings the fit used: cutoff, species, ...)."""
    try:
        meta = torch.load(ckpt, map_location="cpu", weights_only=False)
        task = EBTask.load_from_checkpoint(ckpt, map_location=device)
    except Exception as e:  # noqa: BLE001 - torch/Lightning raise many types for a bad file
        raise PredictError(f"{ckpt}: not a loadable mgglass checkpoint ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    data = dict(meta.get("datamodule_hyper_parameters") or {})
    return task.eval(), data


def graph_settings(hp: dict) -> tuple[list[str], float, bool]:
    """(species, cutoff, self_loops) the fit built its graphs with, from ``load_task``'s settings."""
    return list(hp.get("species") or DEFAULT_SPECIES), float(hp.get("cutoff", 5.0)), bool(hp.get("self_loops", False))


def read_graph(path: Path, hp: dict, label_key: str = "eb"):
    """One glass file as a graph built the way the checkpoint's fit built them (labels if present)."""
    species, cutoff, self_loops = graph_settings(hp)
    return glass_to_data(read_glass(path, label_key=label_key, species=species, labels_optional=True), cutoff, species, self_loops)


def checkpoints_of(runs: list[str] | None, paths: list[str] | None, tracking_root: str = "mlruns",
                   tracking_uri: str | None = None) -> list[Path]:
    """The checkpoints named by ``--run`` ids (an ensemble's run gives its members) or ``--ckpt_path``s."""
    ckpts = [c for r in runs for c in resolve_checkpoints(r, tracking_root, tracking_uri)] if runs else [Path(c) for c in paths]
    for c in ckpts:
        if not c.is_file():
            raise PredictError(f"ckpt_path: {c}: no such checkpoint")
    return ckpts


def resolve_device(name: str) -> str:
    """``auto`` -> cuda when there is a GPU, else cpu; a CUDA device that is not there is refused."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PredictError(f"--device {name}: no CUDA device is available")
    return name
