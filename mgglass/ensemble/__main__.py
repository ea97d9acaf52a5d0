"""python -m mgglass.ensemble (--run RUN_ID [RUN_ID ...] | --ckpt_path CKPT [CKPT ...]) --name NAME [--tracking_root mlruns]

Records several fits (seeds, cross-validation folds, other configs) as one MLflow run whose
``members.*`` params name each member's run and checkpoint. ``mgglass.predict --run`` and
``mgglass.test --run`` then take the ensemble's run id like any fit's: predictions are the members'
mean and ``eb_std`` their spread. Members must build their graphs alike (cutoff, species, self
loops); a run or checkpoint named twice is refused.

``--calibrate GLASS [GLASS ...]`` (labelled glasses none of the members trained on, e.g. the
validation glass of seed ensembles) also records s, the error the members' spread leaves
unexplained there, so that predictions carry ``eb_sigma`` = √(eb_std² + s²) as well.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from mlflow.entities import Param

from mgglass.data import GlassDataError
from mgglass.inference import predict_glass
from mgglass.metrics import pooled_metrics
from mgglass.task import (
    PredictError,
    load_models,
    predictive_std,
    read_graph,
    residual_std,
    score_members,
    uncertainty_scores,
)
from mgglass.tracking import (
    RESIDUAL_PARAM,
    TrackingConfig,
    checkpoints_of,
    experiment_id,
    git_commit,
    open_client,
    resolve_checkpoints,
    resolve_tracking_uri,
)

PROG = "mgglass.ensemble"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n", 1)[1])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", nargs="+", help="MLflow run ids of fits (or of ensembles: their members join)")
    src.add_argument("--ckpt_path", nargs="+", help="checkpoints written by mgglass.fit")
    p.add_argument("--name", required=True, help="the ensemble run's name")
    p.add_argument("--experiment", default="mgglass", help="MLflow experiment of the ensemble run")
    p.add_argument("--tracking_root", default="mlruns")
    p.add_argument("--tracking_uri", default=None, help="default: sqlite:///<tracking_root>/mlflow.db")
    p.add_argument("--calibrate", nargs="+", metavar="GLASS", help="labelled glass files none of the members trained on: "
                   "record s so that predictions carry eb_sigma = sqrt(eb_std^2 + s^2)")
    p.add_argument("--label_key", default="eb", help="per-atom label array of the calibration glasses (ase-readable files)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.run and len(set(args.run)) != len(args.run):
            raise PredictError(f"run {next(r for r in args.run if args.run.count(r) > 1)} is named twice as an ensemble member")
        if args.run:
            members = [(r, c) for r in args.run for c in resolve_checkpoints(r, args.tracking_root, args.tracking_uri)]
        else:
            members = [(None, c) for c in checkpoints_of(None, args.ckpt_path)]
        ckpts = [c for _, c in members]
        if len({c.resolve() for c in ckpts}) != len(ckpts):
            raise PredictError("a checkpoint is named twice as an ensemble member")
        if len(ckpts) < 2:
            raise PredictError("an ensemble needs at least two members")
        ensemble, hp = load_models(ckpts, "cpu")  # loadable, and building their graphs alike
        calibration = calibrate(ensemble, hp, [Path(g) for g in args.calibrate], args.label_key) if args.calibrate else {}
    except (PredictError, GlassDataError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        return 2
    params = {RESIDUAL_PARAM: f"{calibration['residual_std_ev']:.6f}", "calibration.glasses": ",".join(calibration["glasses"])} if calibration else {}
    run_id = record(args.name, members, args.experiment, args.tracking_root, args.tracking_uri, params)
    print(json.dumps({"run_id": run_id, "name": args.name, "members": [str(c) for c in ckpts], **calibration}), flush=True)
    return 0


def calibrate(ensemble, hp: dict, glasses: list[Path], label_key: str = "eb") -> dict:
    """s of ``ensemble`` on labelled ``glasses`` (:func:`mgglass.task.ensemble.residual_std`), with the
    ensemble's r and how its spread, and the spread with s, cover the errors there."""
    trained = {g for settings in ensemble.member_settings for g in settings.get("train") or ()}
    for path in glasses:
        if path.name in trained:
            raise PredictError(f"--calibrate {path}: {path.name} trained some of the members; calibrate on glasses none of them trained on")
    graphs = [read_graph(path, hp, label_key) for path in glasses]
    for path, g in zip(glasses, graphs):
        if "y" not in g:
            raise PredictError(f"--calibrate {path}: the glass has no '{label_key}' labels")
    y = np.concatenate([g.y.double().numpy() for g in graphs])
    members = [np.concatenate([predict_glass(m, g) for g in graphs]) for m in ensemble.members]
    mean, spread, scores = score_members(y, members)
    s = residual_std(y, mean, spread)
    return {"residual_std_ev": s, "glasses": [p.name for p in glasses], "calibration_r": pooled_metrics(y, mean)["r"],
            "calibration_best_member_r": scores["best_member_r"], "calibration_eb_std": scores["uncertainty"],
            "calibration_eb_sigma": uncertainty_scores(y, mean, predictive_std(spread, s))}


def record(name: str, members: list[tuple[str | None, Path]], experiment: str, tracking_root: str,
           tracking_uri: str | None = None, extra: dict[str, str] | None = None) -> str:
    """An MLflow run standing for the ensemble of ``members`` ((run id or None, checkpoint) pairs)."""
    uri = resolve_tracking_uri(TrackingConfig(root=tracking_root, tracking_uri=tracking_uri))
    client = open_client(uri)
    exp = experiment_id(client, uri, experiment)
    run = client.create_run(exp, run_name=name, tags={"git_commit": git_commit(), "mgglass_role": "ensemble",
                                                      "mlflow.note.content": f"ensemble of {len(members)} fits"})
    rows = [{"run_id": r, "checkpoint": str(Path(c).resolve())} for r, c in members]
    params = [Param(f"members.{i:03d}", json.dumps(row)) for i, row in enumerate(rows)] + [Param("n_members", str(len(rows)))]
    params += [Param(k, v) for k, v in (extra or {}).items()]
    client.log_batch(run.info.run_id, params=params)
    client.log_text(run.info.run_id, json.dumps(rows, indent=1), "members.json")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


if __name__ == "__main__":
    sys.exit(main())
