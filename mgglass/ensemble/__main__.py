"""python -m mgglass.ensemble (--run RUN_ID [RUN_ID ...] | --ckpt_path CKPT [CKPT ...]) --name NAME [--tracking_root mlruns]

Records several fits (seeds, cross-validation folds, other configs) as one MLflow run whose
``members.*`` params name each member's run and checkpoint. ``mgglass.predict --run`` and
``mgglass.test --run`` then take the ensemble's run id like any fit's: predictions are the members'
mean and ``eb_std`` their spread. Members must build their graphs alike (cutoff, species, self
loops); a run or checkpoint named twice is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlflow.entities import Param

from mgglass.task import PredictError, load_models
from mgglass.tracking import (
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
        load_models(ckpts, "cpu")  # loadable, and building their graphs alike
    except PredictError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        return 2
    run_id = record(args.name, members, args.experiment, args.tracking_root, args.tracking_uri)
    print(json.dumps({"run_id": run_id, "name": args.name, "members": [str(c) for c in ckpts]}), flush=True)
    return 0


def record(name: str, members: list[tuple[str | None, Path]], experiment: str, tracking_root: str,
           tracking_uri: str | None = None) -> str:
    """An MLflow run standing for the ensemble of ``members`` ((run id or None, checkpoint) pairs)."""
    uri = resolve_tracking_uri(TrackingConfig(root=tracking_root, tracking_uri=tracking_uri))
    client = open_client(uri)
    exp = experiment_id(client, uri, experiment)
    run = client.create_run(exp, run_name=name, tags={"git_commit": git_commit(), "mgglass_role": "ensemble",
                                                      "mlflow.note.content": f"ensemble of {len(members)} fits"})
    rows = [{"run_id": r, "checkpoint": str(Path(c).resolve())} for r, c in members]
    params = [Param(f"members.{i:03d}", json.dumps(row)) for i, row in enumerate(rows)] + [Param("n_members", str(len(rows)))]
    client.log_batch(run.info.run_id, params=params)
    client.log_text(run.info.run_id, json.dumps(rows, indent=1), "members.json")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


if __name__ == "__main__":
    sys.exit(main())
