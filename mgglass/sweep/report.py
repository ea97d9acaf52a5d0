"""What a sweep leaves behind: an MLflow parent run over its trials (their runs nest under it),
Optuna's plots, and the best trial written out as a ready-to-run experiment config."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
from pathlib import Path

import yaml

from mgglass.cli import BASE_CONFIG
from mgglass.sweep.spec import SweepSpec
from mgglass.tracking import (
    experiment_id,
    git_commit,
    open_client,
    provenance_tags,
    resolve_tracking_uri,
)
from mgglass.workers import process_alive

PLOTS = ("plot_optimization_history", "plot_param_importances", "plot_parallel_coordinate", "plot_intermediate_values")


def redact(url: str) -> str:
    """A storage URL without its password (postgresql://user:secret@host -> user:***@host)."""
    return re.sub(r"(//[^:/@]+:)[^@]+@", r"\1***@", url)


class ParentRun:
    """The MLflow run of one sweep invocation (rank-0 process: the sweep itself)."""

    def __init__(self, tracking_cfg, spec: SweepSpec, storage_url: str):
        self.uri = resolve_tracking_uri(tracking_cfg)
        self.client = open_client(self.uri)
        exp = experiment_id(self.client, self.uri, tracking_cfg.experiment)
        tags = {
            **provenance_tags(),
            "mgglass_role": "sweep",
            "optuna_study": spec.study,
            "optuna_storage": redact(storage_url),
            "sweep_file": str(spec.path),
            "sweep_host": socket.gethostname(),
            "sweep_pid": str(os.getpid()),
        }
        self.killed = close_dead_parents(self.client, exp, spec.study)
        run = self.client.create_run(exp, run_name=f"sweep-{spec.study}", tags=tags)
        self.run_id = run.info.run_id
        params = {
            "configs": json.dumps(spec.configs),
            "objective": f"{spec.direction} {spec.metric}",
            "trials": str(spec.trials),
            "timeout": str(spec.timeout),
            "sampler": json.dumps(spec.sampler),
            "pruner": json.dumps(spec.pruner),
            "devices_per_trial": str(spec.devices_per_trial),
            "workers": str(spec.workers),
            **{f"space.{p.key}": _describe(p) for p in spec.space},
            # MLflow keys take no '+': an appending override (trainer.callbacks+) is logged as '.append'.
            **{f"fixed.{k[:-1] + '.append' if k.endswith('+') else k}": json.dumps(v) for k, v in spec.overrides.items()},
        }
        from mlflow.entities import Param

        items = [Param(k[:250], v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])
        self.client.log_artifact(self.run_id, str(spec.path), "sweep")

    def finish(self, study, spec: SweepSpec, out_dir: Path, best_config: Path | None, status: str = "FINISHED") -> None:
        from optuna.trial import TrialState

        counts = {s.name.lower(): 0 for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
        for t in study.get_trials(deepcopy=False):
            if t.state.name.lower() in counts:
                counts[t.state.name.lower()] += 1
        for name, n in counts.items():
            self.client.log_metric(self.run_id, f"trials_{name}", n)
        best = best_trial(study)
        if best is not None:
            from mlflow.entities import Param

            params = [Param(f"best.{k}"[:250], json.dumps(v)) for k, v in best.params.items()]
            self.client.log_batch(self.run_id, params=params)
            self.client.log_metric(self.run_id, f"best_{spec.metric}", float(best.value))
            self.client.set_tag(self.run_id, "best_trial", str(best.number))
            if best.user_attrs.get("mlflow_run_id"):
                self.client.set_tag(self.run_id, "best_run_id", best.user_attrs["mlflow_run_id"])
            if best_config is not None:
                self.client.set_tag(self.run_id, "best_config", str(best_config))
                self.client.log_artifact(self.run_id, str(best_config), "best")
        for path in write_study_outputs(study, out_dir):
            self.client.log_artifact(self.run_id, str(path), "optuna")
        self.client.set_terminated(self.run_id, status=status)


def close_dead_parents(client, experiment_id: str, study: str) -> list[str]:
    """Mark KILLED the parent runs of earlier invocations of ``study`` on this host that are still
    RUNNING although their sweep process is gone (a ``kill -9`` leaves them so); returns their ids."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.mgglass_role = 'sweep' and tags.optuna_study = '{study}' "
                                                            "and attributes.status = 'RUNNING'")
    killed = []
    for run in runs:
        tags = run.data.tags
        pid = tags.get("sweep_pid", "")
        if tags.get("sweep_host") == socket.gethostname() and pid.isdigit() and not process_alive(int(pid)):
            client.set_terminated(run.info.run_id, status="KILLED")
            killed.append(run.info.run_id)
    return killed


def _describe(p) -> str:
    if p.type == "categorical":
        return f"categorical {json.dumps(p.choices)}"
    return f"{p.type} [{p.low:g}, {p.high:g}]" + (" log" if p.log else "") + (f" step {p.step:g}" if p.step else "")


def best_trial(study):
    """The best COMPLETE trial, or None (Optuna's ``best_trial`` raises when there is none)."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None and math.isfinite(t.value)]
    if not done:
        return None
    pick = max if study.direction.name == "MAXIMIZE" else min
    return pick(done, key=lambda t: t.value)


def write_study_outputs(study, out_dir: Path) -> list[Path]:
    """trials.csv and Optuna's plots (PNG, matplotlib backend) under ``out_dir``; a plot Optuna cannot
    draw yet (e.g. importances with one finished trial) is skipped."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    csv = out_dir / "trials.csv"
    study.trials_dataframe().to_csv(csv, index=False)
    written.append(csv)
    for name in PLOTS:
        path = out_dir / f"{name.removeprefix('plot_')}.png"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = getattr(ovm, name)(study)
            except (ValueError, RuntimeError, IndexError, ZeroDivisionError) as e:  # too few trials to draw it
                print(f"mgglass.sweep: no {name.removeprefix('plot_')} plot yet: {' '.join(str(e).split())[:200]}", flush=True)
                continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


# -- the best trial as an experiment config ---------------------------------------------------------
def _merge(a: dict, b: dict) -> dict:
    """``b`` over ``a``, as config layering does: mappings merge, other values (and a mapping with a
    different class_path) replace."""
    out = dict(a)
    for k, v in b.items():
        old = out.get(k)
        if isinstance(old, dict) and isinstance(v, dict) and old.get("class_path", v.get("class_path")) == v.get("class_path", old.get("class_path")):
            out[k] = _merge(old, v)
        else:
            out[k] = v
    return out


def _set_dotted(cfg: dict, key: str, value) -> None:
    node = cfg
    *parents, last = key.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


def compose_config(spec: SweepSpec, values: dict) -> dict:
    """The sweep's configs merged in order, then its fixed overrides and ``values``, with checkpoint
    selection on the objective: what the trial with ``values`` ran, as one file."""
    merged: dict = {}
    for c in spec.configs:
        if Path(c).resolve() != BASE_CONFIG:  # loaded first by every fit anyway
            merged = _merge(merged, yaml.safe_load(Path(c).read_text()) or {})
    selection = {"checkpoint.monitor": spec.metric, "checkpoint.mode": "max" if spec.direction == "maximize" else "min"}
    for k, v in {**spec.overrides, **values, **selection}.items():
        _set_dotted(merged, k, v)
    return merged


def write_best_config(spec: SweepSpec, study, path: Path | None = None) -> Path | None:
    """Write the best COMPLETE trial as an experiment config (None when no trial has completed)."""
    best = best_trial(study)
    if best is None:
        return None
    path = Path(path or spec.best_config_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Best trial {best.number} of Optuna study {spec.study!r} ({spec.path}): {spec.metric} = {best.value:.4f}\n"
        f"# (validation-selected epoch). Written by mgglass.sweep on {time.strftime('%Y-%m-%d %H:%M')} at commit\n"
        f"# {git_commit()[:12]}. Run it with: python -m mgglass.fit --config {path}\n"
    )
    values = {p.key: p.decode(best.params[p.key]) for p in spec.space if p.key in best.params}
    body = yaml.safe_dump(compose_config(spec, values), sort_keys=False, default_flow_style=None)
    path.write_text(header + body)
    return path
