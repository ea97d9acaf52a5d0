"""python -m mgglass.reference [--seeds 0,1,2] [--data_dir DIR] [--name soap-lgbm]

The descriptor reference (:mod:`mgglass.baselines.soap`: per-atom SOAP power spectra with LightGBM)
on the official split (``--train/--val/--test`` name others): trained on train0–5, stopped early on
train6, scored on test0. Each seed is
an MLflow run (tag ``model`` = SOAP+LightGBM, metrics ``val/r``, ``test/r``, ``test/r2``,
``test/mae``) in the project store, so that ``mgglass.report`` lists it as a row of the reproduction
table beside the networks. A seed whose run already finished with the same settings is not run
again: rerunning after an interruption continues with the seeds left.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict

import numpy as np
from mlflow.entities import Metric, Param

from mgglass.baselines.soap import MODEL, ReferenceError, SoapSettings, fit_predict
from mgglass.data import OFFICIAL_SPLIT, GlassDataError, read_glass
from mgglass.data.download import resolve_files
from mgglass.metrics import pooled_metrics
from mgglass.runtime import keep_freed_memory
from mgglass.tracking import (
    TrackingConfig,
    experiment_id,
    open_client,
    provenance_tags,
    resolve_tracking_uri,
    stored_metric,
    ui_name,
)

PROG = "mgglass.reference"
METRICS = ("val_r", "test_r", "test_r2", "test_mae")  # logged per seed under the fit's names (val/r, ...)


def _split_of(params: dict) -> dict[str, str]:
    """A reference run's glasses per split (runs before 2026-12-05 logged the training glasses only, and
    the validation and test glasses were the official split's: ``make reference``)."""
    return {k: params.get(f"data.{k}", json.dumps(list(OFFICIAL_SPLIT[k]))) for k in ("train", "val", "test")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n", 1)[1])
    p.add_argument("--seeds", default="0", help="comma-separated LightGBM seeds, one run each (default 0)")
    p.add_argument("--name", default="soap-lgbm", help="run group name: runs are <name>-s<seed>")
    p.add_argument("--data_dir", default=None, help="folder with the released glasses (default: $MGGLASS_DATA_DIR, else downloaded)")
    for split in ("train", "val", "test"):
        p.add_argument(f"--{split}", default=",".join(OFFICIAL_SPLIT[split]), help=f"{split} glass files, comma-separated (default: the official split)")
    p.add_argument("--experiment", default="mgglass")
    p.add_argument("--tracking_root", default="mlruns")
    p.add_argument("--tracking_uri", default=None, help="default: sqlite:///<tracking_root>/mlflow.db")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    keep_freed_memory()
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        if len(set(seeds)) != len(seeds):
            raise ValueError
    except ValueError:
        print(f"{PROG}: error: --seeds {args.seeds}: expected distinct integers, e.g. 0,1,2", file=sys.stderr)
        return 2
    try:
        split = {k: resolve_files(getattr(args, k).split(","), args.data_dir) for k in ("train", "val", "test")}
        missing = [str(f) for files in split.values() for f in files if not f.is_file()]
        if missing:
            raise GlassDataError(missing[0], "no such glass file")
        for f in (f for files in split.values() for f in files):
            read_glass(f)  # a bad file is refused before a run is created for it (it was left FAILED)
    except (GlassDataError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    settings = SoapSettings()
    uri = resolve_tracking_uri(TrackingConfig(root=args.tracking_root, tracking_uri=args.tracking_uri))
    client = open_client(uri)
    exp = experiment_id(client, uri, args.experiment)
    results, identity = [], json.dumps(asdict(settings), sort_keys=True)
    glasses = {k: json.dumps([f.name for f in split[k]]) for k in ("train", "val", "test")}
    for seed in seeds:
        name = f"{args.name}-s{seed}"
        earlier = client.search_runs([exp], filter_string=f"attributes.run_name = '{name}'")
        finished = [r for r in earlier if r.info.status == "FINISHED"]
        other = next((r for r in finished if _split_of(r.data.params) != glasses), None)
        if other is not None:  # the report pools a name's runs as one row: one name, one split
            theirs = _split_of(other.data.params)
            differ = ", ".join(f"{k} {', '.join(json.loads(theirs[k]))}" for k in glasses if theirs[k] != glasses[k])
            print(f"{PROG}: error: --name {args.name}: its run {name} was on other glasses ({differ}); give this split "
                  "its own --name", file=sys.stderr)
            return 2
        done = [r for r in finished if r.data.params.get("settings") == identity]
        if done:
            print(f"{PROG}: {name}: finished before (run {done[0].info.run_id}); not run again", file=sys.stderr, flush=True)
            results.append({"seed": seed, "run_id": done[0].info.run_id, **{k: stored_metric(done[0].data.metrics, k) for k in METRICS}})
            continue
        for r in earlier:
            if r.info.status == "RUNNING":
                client.set_terminated(r.info.run_id, "KILLED")  # an interrupted attempt: its seed runs again
        run = client.create_run(exp, run_name=name, tags={"model": MODEL, "seed": str(seed), **provenance_tags(),  # its wall time is this machine's
                                                          "mlflow.note.content": "descriptor reference, official split"})
        rid = run.info.run_id
        client.log_param(rid, "settings", identity)
        for k, names in glasses.items():
            client.log_param(rid, f"data.{k}", names)
        try:
            out, info = fit_predict(split["train"], split["val"], split["test"], settings=settings, seed=seed)
        except (ReferenceError, GlassDataError) as e:
            client.set_terminated(rid, "FAILED")
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return 2
        y, pred = (np.concatenate([v[i] for v in out.values()]) for i in (0, 1))
        test = pooled_metrics(y, pred)
        metrics = dict(zip(METRICS, (info["val_r"], test["r"], test["r2"], test["mae"])))
        ts = int(time.time() * 1000)
        client.log_batch(rid, metrics=[Metric(ui_name(k), float(v), ts, 0) for k, v in metrics.items()],
                         params=[Param("best_iteration", str(info["best_iteration"]))])
        client.set_terminated(rid)
        print(f"{PROG}: {name}: val r {info['val_r']:.4f}, test r {test['r']:.4f} ({info['seconds']:.0f} s)", file=sys.stderr, flush=True)
        results.append({"seed": seed, "run_id": rid, **metrics})
    print(json.dumps({"model": MODEL, "runs": results}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
