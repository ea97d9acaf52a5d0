"""Run lookup: from an MLflow run id to the checkpoints it stands for (a fit's best checkpoint, an
ensemble's or cross-validation's members), in the run folders under the tracking root or the
run's artifacts."""

from __future__ import annotations

import json
from pathlib import Path

from mgglass.task import PredictError
from mgglass.tracking.store import open_client, read_run_file

RESIDUAL_PARAM = "calibration.residual_std_ev"  # an ensemble run's calibrated s (mgglass.ensemble --calibrate)


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
    if tracking_uri is None and not Path(tracking_root, "mlflow.db").is_file():  # opening it would create an empty store
        raise PredictError(f"run {run_id}: not found: no run folders under {tracking_root}/checkpoints and no MLflow store {uri}")
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


def calibrated_residual(runs: list[str] | None, tracking_root: str = "mlruns", tracking_uri: str | None = None) -> float | None:
    """The s (eV) that ``mgglass.ensemble --calibrate`` recorded on an ensemble's run (``--run`` naming
    that one run), else None: other ensembles give ``eb_std`` only."""
    if not runs or len(runs) != 1:
        return None
    from mlflow.exceptions import MlflowException

    try:
        value = open_client(tracking_uri or f"sqlite:///{tracking_root}/mlflow.db").get_run(runs[0]).data.params.get(RESIDUAL_PARAM)
    except (MlflowException, OSError):
        return None
    return None if value is None else float(value)


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


def checkpoints_of(runs: list[str] | None, paths: list[str] | None, tracking_root: str = "mlruns",
                   tracking_uri: str | None = None) -> list[Path]:
    """The checkpoints named by ``--run`` ids (an ensemble's run gives its members) or ``--ckpt_path``s."""
    ckpts = [c for r in runs for c in resolve_checkpoints(r, tracking_root, tracking_uri)] if runs else [Path(c) for c in paths]
    for c in ckpts:
        if not c.is_file():
            raise PredictError(f"ckpt_path: {c}: no such checkpoint")
    return ckpts
