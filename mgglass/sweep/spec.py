"""Sweep files (``sweeps/*.yaml``): what a study searches, what it optimises and how trials run.

A sweep file is data only; :func:`load_spec` reads and checks it (every problem is a
:class:`SweepError`, one line naming the file and the field). ``FIELDS`` documents each field for
``python -m mgglass.sweep --help`` and docs/guide/sweep.md.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

FIELDS: dict[str, str] = {
    "study": "study name in the storage (default: the sweep file's stem); rerunning the same sweep continues it",
    "configs": "experiment config(s) every trial starts from, as `mgglass.fit --config` (list, required)",
    "overrides": "fixed dotted overrides for every trial, e.g. {trainer.max_epochs: 40}",
    "space": "dotted config key -> {type: float|int|categorical, low, high, log, step, choices}",
    "objective": "{metric: val_r, direction: maximize}; a validation metric the task logs, never a test one",
    "trials": "finished (complete or pruned) trials the study should reach; rerunning tops it up",
    "timeout": "seconds this invocation may run before it starts no new trial (null: none)",
    "sampler": "{name: tpe|random|qmc|cmaes|gp, seed: 0, ...}: an optuna.samplers class and its arguments",
    "pruner": "{name: median|hyperband|percentile|successive_halving|threshold|wilcoxon|none, ...}",
    "storage": "null: sqlite:///<tracking.root>/optuna.db; an RDB URL (postgresql://...); or journal:PATH",
    "devices_per_trial": "devices per trial; above 1 a trial trains with DDP (NCCL on GPUs, gloo on CPU)",
    "workers": "trials at once; auto: GPUs // devices_per_trial, or 2 on a CPU-only machine",
    "accelerator": "auto (GPUs when present), gpu or cpu",
    "heartbeat_interval": "seconds between a running trial's heartbeats (SQL storages; other hosts' dead trials)",
    "grace_period": "seconds without a heartbeat after which a trial counts as dead and is retried",
    "max_retry": "times a trial interrupted by a crash is rerun with the same parameters (default 1)",
    "best_config": "where the best trial is written as an experiment config (default experiments/generated/<study>-best.yaml)",
}

SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "qmc": "QMCSampler", "cmaes": "CmaEsSampler", "gp": "GPSampler"}
PRUNERS = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "hyperband": "HyperbandPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "threshold": "ThresholdPruner",
    "wilcoxon": "WilcoxonPruner",
    "none": "NopPruner",
}
TYPES = ("float", "int", "categorical")


class SweepError(Exception):
    """A problem with a sweep file or its study, reported as one line."""


@dataclass
class Param:
    """One dimension of the search space: a dotted config key and its distribution."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list | None = None

    def suggest(self, trial) -> Any:
        if self.type == "categorical":
            # Optuna's choices are scalars: a list choice (e.g. heads [8, 4, 2, 1]) goes in as JSON.
            return self.decode(trial.suggest_categorical(self.key, [_encode(c) for c in self.choices]))
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def decode(self, value: Any) -> Any:
        """A value as Optuna stores it -> the config value."""
        if self.type == "categorical" and isinstance(value, str) and value not in self.choices:
            return json.loads(value)
        return value

    def probe_values(self) -> list:
        """Values that must all be accepted by the fit's parser (the ends, or every choice)."""
        if self.type == "categorical":
            return list(self.choices)
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]


def _encode(choice: Any) -> Any:
    return json.dumps(choice) if isinstance(choice, (list, dict)) else choice


@dataclass
class SweepSpec:
    path: Path
    study: str
    configs: list[str]
    space: list[Param]
    overrides: dict[str, Any] = field(default_factory=dict)
    metric: str = "val_r"
    direction: str = "maximize"
    trials: int | None = 20
    timeout: float | None = None
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe", "seed": 0})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    storage: str | None = None
    devices_per_trial: int = 1
    workers: int | str = "auto"
    accelerator: str = "auto"
    heartbeat_interval: int = 60
    grace_period: int = 180
    max_retry: int = 1
    best_config: str | None = None

    @property
    def best_config_path(self) -> Path:
        return Path(self.best_config or f"experiments/generated/{self.study}-best.yaml")

    def search(self) -> dict[str, Any]:
        """What makes two sweeps one search (a study holds the trials of one): configs, fixed overrides,
        space and objective, as JSON values."""
        return json.loads(json.dumps({"configs": self.configs, "overrides": self.overrides, "space": [asdict(p) for p in self.space],
                                      "metric": self.metric, "direction": self.direction}, sort_keys=True, default=str))

    def storage_url(self, tracking_root: str) -> str:
        return self.storage or f"sqlite:///{tracking_root}/optuna.db"

    def fail(self, where: str, msg: str) -> SweepError:
        return SweepError(f"{self.path}: {where}: {msg}")


def _param(spec_path: Path, key: str, raw: Any) -> Param:
    where = f"{spec_path}: space.{key}"
    if not isinstance(raw, dict):
        raise SweepError(f"{where}: expected a mapping such as {{type: float, low: 1e-4, high: 1e-2, log: true}}")
    unknown = set(raw) - {"type", "low", "high", "log", "step", "choices"}
    if unknown:
        raise SweepError(f"{where}: unknown field(s) {sorted(unknown)}")
    kind = raw.get("type", "categorical" if "choices" in raw else None)
    if kind not in TYPES:
        raise SweepError(f"{where}: unknown distribution type {kind!r} (one of {', '.join(TYPES)})")
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SweepError(f"{where}: categorical needs a non-empty list of choices")
        return Param(key, kind, choices=choices)
    try:
        low, high = float(raw["low"]), float(raw["high"])
    except (KeyError, TypeError, ValueError):
        raise SweepError(f"{where}: {kind} needs numeric low and high") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise SweepError(f"{where}: empty range: low {low:g} must be below high {high:g}")
    log = bool(raw.get("log", False))
    if log and low <= 0:
        raise SweepError(f"{where}: a log range needs low > 0, not {low:g}")
    step = raw.get("step")
    if step is not None and (log or float(step) <= 0):
        raise SweepError(f"{where}: step must be positive and cannot be combined with log")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise SweepError(f"{where}: int needs whole low and high")
    return Param(key, kind, low, high, log, None if step is None else float(step))


def load_spec(path: str | Path, **changes: Any) -> SweepSpec:
    """Read and check a sweep file; ``changes`` (non-None) replace its fields (command-line options)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise SweepError(f"{path}: cannot read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise SweepError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: expected a mapping of sweep fields")
    unknown = set(raw) - set(FIELDS)
    if unknown:
        raise SweepError(f"{path}: unknown field(s) {sorted(unknown)} (known: {', '.join(FIELDS)})")
    raw.update({k: v for k, v in changes.items() if v is not None})
    configs = raw.get("configs")
    if isinstance(configs, str):
        configs = [configs]
    if not configs or not all(isinstance(c, str) for c in configs):
        raise SweepError(f"{path}: configs: a list of experiment config files is required")
    for c in configs:
        if not Path(c).is_file():
            raise SweepError(f"{path}: configs: {c}: no such file")
    space = raw.get("space") or {}
    if not isinstance(space, dict) or not space:
        raise SweepError(f"{path}: space: at least one dotted config key to search is required")
    overrides = raw.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise SweepError(f"{path}: overrides: expected a mapping of dotted keys to values")
    both = set(overrides) & set(space)
    if both:
        raise SweepError(f"{path}: {sorted(both)} both searched (space) and fixed (overrides)")
    objective = raw.get("objective") or {}
    metric = str(objective.get("metric", "val_r"))
    direction = str(objective.get("direction", "maximize"))
    if not metric.startswith("val_"):
        raise SweepError(f"{path}: objective.metric: {metric!r} is not a validation metric (val_...); test data never select")
    if direction not in ("maximize", "minimize"):
        raise SweepError(f"{path}: objective.direction: {direction!r} is neither maximize nor minimize")
    spec = SweepSpec(
        path=path,
        study=str(raw.get("study") or path.stem),
        configs=list(configs),
        space=[_param(path, str(k), v) for k, v in space.items()],
        overrides={str(k): v for k, v in overrides.items()},
        metric=metric,
        direction=direction,
    )
    for name in ("trials", "timeout", "storage", "devices_per_trial", "workers", "accelerator",
                 "heartbeat_interval", "grace_period", "max_retry", "best_config"):
        if name in raw:
            setattr(spec, name, raw[name])
    for name in ("sampler", "pruner"):
        if name in raw:
            value = raw[name]
            value = {"name": value} if isinstance(value, str) else value
            if not isinstance(value, dict):
                raise SweepError(f"{path}: {name}: expected {{name: ..., <arguments>}}")
            setattr(spec, name, dict(value))
    _check_numbers(spec)
    build_sampler(spec)  # unknown names or arguments fail here, before any trial
    build_pruner(spec.pruner, spec.path)
    return spec


def _check_numbers(spec: SweepSpec) -> None:
    if spec.trials is None and spec.timeout is None:
        raise spec.fail("trials", "set trials, timeout or both: a sweep needs a budget")
    for name in ("trials", "devices_per_trial", "heartbeat_interval", "grace_period"):
        value = getattr(spec, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise spec.fail(name, f"expected a positive integer, not {value!r}")
    if not isinstance(spec.max_retry, int) or spec.max_retry < 0:
        raise spec.fail("max_retry", f"expected a non-negative integer, not {spec.max_retry!r}")
    if spec.timeout is not None and (not isinstance(spec.timeout, (int, float)) or spec.timeout <= 0):
        raise spec.fail("timeout", f"expected positive seconds, not {spec.timeout!r}")
    if spec.workers != "auto" and (not isinstance(spec.workers, int) or spec.workers < 1):
        raise spec.fail("workers", f"expected a positive integer or auto, not {spec.workers!r}")
    if spec.accelerator not in ("auto", "gpu", "cuda", "cpu"):
        raise spec.fail("accelerator", f"expected auto, gpu or cpu, not {spec.accelerator!r}")
    if spec.grace_period <= spec.heartbeat_interval:
        raise spec.fail("grace_period", "must exceed heartbeat_interval")
    best = spec.best_config_path.resolve()
    if best in {Path(c).resolve() for c in spec.configs} | {spec.path.resolve()}:  # written over at every completed trial
        raise spec.fail("best_config", f"{spec.best_config_path} is {'this sweep file' if best == spec.path.resolve() else 'one of its configs'}; "
                        "the best trial is written there: choose another file")


def _construct(module, table: dict[str, str], conf: dict, what: str, path: Path, extra: dict | None = None):
    conf = dict(conf)
    name = str(conf.pop("name", ""))
    if name not in table:
        raise SweepError(f"{path}: {what}.name: unknown {what} {name!r} (one of {', '.join(table)})")
    try:
        return getattr(module, table[name])(**{**(extra or {}), **conf})
    except (TypeError, ValueError, ImportError) as e:
        raise SweepError(f"{path}: {what}: {name}: {' '.join(str(e).split())}") from None


def build_sampler(spec: SweepSpec):
    import optuna

    extra = {}
    if spec.sampler.get("name") == "tpe" and "constant_liar" not in spec.sampler:
        extra["constant_liar"] = True  # parallel workers: do not all sample next to the same running trial
    conf = {"seed": 0, **spec.sampler}  # every sampler in SAMPLERS takes a seed
    with quiet_experimental():
        return _construct(optuna.samplers, SAMPLERS, conf, "sampler", spec.path, extra)


def build_pruner(conf: dict, path: Path | str = "sweep"):
    import optuna

    with quiet_experimental():
        return _construct(optuna.pruners, PRUNERS, conf, "pruner", Path(path))


@contextlib.contextmanager
def quiet_experimental():
    """Silence Optuna's ExperimentalWarning for features used on purpose (heartbeat retries, samplers)."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def storage_file(url: str) -> Path | None:
    """The file behind a ``journal:PATH`` or ``sqlite:///PATH`` storage (None for a server's URL)."""
    for prefix in ("journal:", "sqlite:///"):
        if url.startswith(prefix):
            return Path(url[len(prefix) :])
    return None


def open_storage(url: str, spec: SweepSpec | None = None, heartbeat: bool = True):
    """An Optuna storage for ``url``: ``journal:PATH`` (a journal file, lock-safe on one machine or a
    shared filesystem) or an RDB URL. SQLite waits up to 60 s for a lock instead of failing with
    "database is locked"; SQL storages get heartbeats so that trials of a dead process are retried."""
    import optuna

    file = storage_file(url)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(file)))
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    if heartbeat and spec is not None:
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        with quiet_experimental():
            kwargs.update(
                heartbeat_interval=spec.heartbeat_interval,
                grace_period=spec.grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=spec.max_retry),
            )
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with quiet_experimental():
            return optuna.storages.RDBStorage(url, **kwargs)
    except (ImportError, ValueError, SQLAlchemyError) as e:  # bad URL, missing driver, unreachable server
        raise SweepError(f"storage: {url}: {' '.join(str(e).split())[:300]}") from None
