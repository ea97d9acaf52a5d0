"""Running a leave-one-glass-out cross-validation: one ``python -m mgglass.fit`` per fold and seed,
run by parallel workers on shares of the machine (:mod:`mgglass.workers`, as the sweep's trials are),
each a child MLflow run under the cross-validation's parent run, then the summary.

Everything lives under ``<tracking root>``: fold fits in ``checkpoints/<name>/<glass>-s<seed>/``
(their logs beside), the summary in ``cv/<name>/`` (``folds.csv``, ``summary.md``, ``cv.png``,
``reference/``) and the parent run's id in ``cv/<name>/cv.json`` with the plan it was started with.
Run again after a ``kill -9``, the same command reopens the parent run, skips finished folds (their
``result.json``), resumes interrupted ones from their ``last.ckpt`` and writes the summary.
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mgglass.cv import summary
from mgglass.cv.folds import Fold, glass_stem
from mgglass.level import LevelError, fit_line
from mgglass.tracking import (
    add_machine,
    experiment_id,
    open_client,
    provenance_tags,
    resolve_tracking_uri,
)
from mgglass.workers import ProcessPool, Slot, read_result

PROG = "mgglass.cv"
PLAN_FILE = "cv.json"


class CVError(Exception):
    """A bad option or a plan that cannot run, said in one line."""


@dataclass
class Plan:
    """What a cross-validation runs: the same plan reruns (resumes); another one is refused."""

    name: str
    configs: list[str]
    overrides: list[str]
    folds: list[Fold]
    seeds: list[int]
    data_root: str | None
    root: Path
    levels: dict[str, float] = field(default_factory=dict)
    level_key: str = "pot"
    reference: str = "soap"
    label_means: dict[str, float] = field(default_factory=dict)  # each glass's mean label (the level line's)

    @property
    def out_dir(self) -> Path:
        return self.root / "cv" / self.name

    def fold_dir(self, fold: Fold, seed: int) -> Path:
        return self.root / "checkpoints" / self.name / f"{fold.name}-s{seed}"

    def identity(self) -> dict:
        """The settings a rerun must share (folds may be added by --folds; seeds likewise)."""
        ident = {"configs": self.configs, "overrides": self.overrides, "data_root": self.data_root,
                 "validation": {f.name: list(f.val) for f in self.folds}}
        if any(f.left_out for f in self.folds):  # only with --groups, so plans from before it still resume
            ident["left_out"] = {f.name: list(f.left_out) for f in self.folds}
        return ident


def fold_command(plan: Plan, fold: Fold, seed: int, slot: Slot, parent_run_id: str | None) -> list[str]:
    """The fit of one fold and seed: the plan's configs and overrides with the fold's split."""
    args = [sys.executable, "-m", "mgglass.fit"]
    for c in plan.configs:
        args += ["--config", c]
    args += plan.overrides
    args += [f"--data.train={json.dumps(list(fold.train))}", f"--data.val={json.dumps(list(fold.val))}",
             f"--data.test={json.dumps([fold.held_out])}", f"--seed_everything={seed}",
             f"--tracking.run_name={plan.name}-{fold.name}-s{seed}", f"--checkpoint.dirpath={plan.fold_dir(fold, seed)}",
             f"--tracking.tags={json.dumps({'mgglass_cv': plan.name, 'cv_fold': fold.name})}", "--ckpt_path=last"]
    if plan.data_root is not None:
        args.append(f"--data.root={plan.data_root}")
    if parent_run_id:
        args.append(f"--tracking.parent_run_id={parent_run_id}")
    return args + slot.overrides()


def run_folds(plan: Plan, slots: list[Slot], parent_run_id: str | None) -> list[str]:
    """Fit every (fold, seed) that has no result yet, ``len(slots)`` at a time; returns the failures."""
    todo = [(f, s) for f in plan.folds for s in plan.seeds if _finished(plan.fold_dir(f, s)) is None]
    done = len(plan.folds) * len(plan.seeds) - len(todo)
    if done:
        print(f"{PROG}: {done} fold fit(s) already finished; {len(todo)} to run", flush=True)
    pool, failures, lock = ProcessPool(slots), [], threading.Lock()

    def one(job):
        fold, seed = job
        folder = plan.fold_dir(fold, seed)
        log = folder.with_name(folder.name + ".log")
        with pool.slot() as slot:
            resumed = (folder / "last.ckpt").is_file()
            print(f"{PROG}: {'resuming' if resumed else 'fitting'} {fold.name} held out, seed {seed} "
                  f"(validation {', '.join(map(glass_stem, fold.val))}) on {slot.describe()} (log: {log})", flush=True)
            t0 = time.perf_counter()
            rc = pool.run(fold_command(plan, fold, seed, slot, parent_run_id), slot.env(), log)
        if rc != 0 or _finished(folder) is None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
            with lock:
                failures.append(f"{fold.name} seed {seed}: fit exited {rc}: {tail[0] if tail else 'no output'} (see {log})")
        else:
            print(f"{PROG}: {fold.name} seed {seed} done in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)

    try:
        with ThreadPoolExecutor(max_workers=len(slots)) as ex:
            list(ex.map(one, todo))
    except BaseException:
        pool.stop_all()
        raise
    return failures


def _finished(folder: Path) -> dict | None:
    result = read_result(folder)
    return result if result and result.get("state") == "COMPLETE" else None


def read_predictions(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions) eV of a finished fold fit's held-out glass (its ``test/predictions.csv``)."""
    path = folder / "test" / "predictions.csv"
    try:
        rows = np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding=None)
    except OSError:
        raise CVError(f"{path}: missing (the fold's fit finished without test predictions)") from None
    return np.atleast_1d(rows["eb_ev"]).astype(float), np.atleast_1d(rows["eb_pred_ev"]).astype(float)


def finished_scope(plan: Plan, every: list[Fold]) -> Plan:
    """``plan`` widened to every fold and seed of its cross-validation with a finished fit: folds run by
    earlier invocations (another ``--folds``) and their other seeds, so the summary and the parent run
    describe the whole cross-validation rather than the subset run last. ``every``: the folds of all
    glasses under this invocation's rules; an earlier fold validated on other glasses (another
    ``--val``) is left out."""
    recorded = (read_plan(plan) or {}).get("validation") or {}
    mine = {f.name for f in plan.folds}
    folds = [f for f in every if f.name in mine or recorded.get(f.name) == list(f.val)]
    seeds = set(plan.seeds)
    for fold in folds:
        for folder in (plan.root / "checkpoints" / plan.name).glob(f"{fold.name}-s*"):
            seed = folder.name.removeprefix(f"{fold.name}-s")
            if seed.isdigit() and folder.is_dir() and _finished(folder):
                seeds.add(int(seed))
    return replace(plan, folds=folds, seeds=sorted(seeds))


def line_mean(plan: Plan, fold: Fold) -> float:
    """The held-out glass's mean EB on the level line through the glasses its fold saw (training and
    validation; :func:`mgglass.level.fit_line`), nan where a glass lacks a level or a label."""
    seen = {g: (plan.levels.get(g, math.nan), plan.label_means.get(g, math.nan)) for g in (*fold.train, *fold.val)}
    target = plan.levels.get(fold.held_out, math.nan)
    if not math.isfinite(target) or not all(math.isfinite(v) for pair in seen.values() for v in pair):
        return math.nan
    try:
        slope, intercept = fit_line(seen, plan.level_key)
    except LevelError:
        return math.nan
    return intercept + slope * target


def collect(plan: Plan, model: str) -> list[dict]:
    """Table rows of the finished fold fits: one per fold and seed, and the seeds' ensemble."""
    rows = []
    for fold in plan.folds:
        val = ",".join(glass_stem(v) for v in fold.val)
        level, line = plan.levels.get(fold.held_out, float("nan")), line_mean(plan, fold)
        preds, y = [], None
        for seed in plan.seeds:
            folder = plan.fold_dir(fold, seed)
            if _finished(folder) is None:
                continue
            y, p = read_predictions(folder)
            preds.append(p)
            rows.append(summary.fold_row(model, fold.name, val, str(seed), y, p, level, line))
        if len(preds) > 1:
            rows.append(summary.ensemble_row(model, fold.name, val, y, preds, level, line))
    return rows


def check_partner(plan: Plan, partner: str) -> None:
    """``--with partner``: another cross-validation under the same tracking root whose folds are these
    folds (the same validation and left-out glasses, the same data root), so that its fit of a fold and
    seed can join this one's in an ensemble."""
    if partner == plan.name:
        raise CVError(f"--with {partner}: that is this cross-validation; name another one")
    other = replace(plan, name=partner)
    state = read_plan(other)
    if state is None:
        raise CVError(f"--with {partner}: no cross-validation {partner!r} under {plan.root / 'cv'} (its {PLAN_FILE})")
    if state.get("data_root") != plan.data_root:
        raise CVError(f"--with {partner}: it read its glasses from {state.get('data_root')!r}, not {plan.data_root!r}")
    for fold in plan.folds:
        if fold.name not in (state.get("validation") or {}):
            continue
        theirs = (state["validation"][fold.name], (state.get("left_out") or {}).get(fold.name, []))
        if theirs != (list(fold.val), list(fold.left_out)):
            raise CVError(f"--with {partner}: its fold {fold.name} was validated on {theirs[0]} with {theirs[1] or 'nothing'} left out, "
                          f"this one's on {list(fold.val)} with {list(fold.left_out) or 'nothing'}: not the same fold")


def partner_rows(plan: Plan, partner: str, model: str) -> list[dict]:
    """Per fold and seed, the ensemble of this cross-validation's fit and ``partner``'s fit of the same
    fold and seed (where both finished): rows of the model ``<model> + <partner>``."""
    rows, other = [], replace(plan, name=partner)
    for fold in plan.folds:
        val = ",".join(glass_stem(v) for v in fold.val)
        level, line = plan.levels.get(fold.held_out, float("nan")), line_mean(plan, fold)
        for seed in plan.seeds:
            mine, theirs = plan.fold_dir(fold, seed), other.fold_dir(fold, seed)
            if _finished(mine) is None or _finished(theirs) is None:
                continue
            (y, p), (y2, q) = read_predictions(mine), read_predictions(theirs)
            if y.shape != y2.shape or not np.allclose(y, y2):
                raise CVError(f"--with {partner}: fold {fold.name} seed {seed}: its held-out labels are not this fit's")
            row = summary.ensemble_row(f"{model} + {partner}", fold.name, val, y, [p, q], level, line)
            rows.append({**row, "seed": str(seed), "partner": partner})
    return rows


def metric_name(text: str) -> str:
    """``text`` with what an MLflow metric name cannot hold replaced by _."""
    return re.sub(r"[^\w\-. /]", "_", text)


# -- the parent MLflow run -----------------------------------------------------------------------
class ParentRun:
    """The cross-validation's MLflow run: created on the first invocation, reopened by a rerun (its
    id is in ``cv.json``), finished with the summary's metrics and files. Its ``members.*`` params
    name the fold fits, so ``mgglass.predict --run`` can use it as an ensemble."""

    def __init__(self, plan: Plan, tracking_cfg):
        self.uri = resolve_tracking_uri(tracking_cfg)
        self.client = open_client(self.uri)
        state = read_plan(plan)
        self.run_id = state.get("run_id") if state and state.get("tracking_uri") == self.uri else None
        if self.run_id is not None:
            try:
                self.client.update_run(self.run_id, status="RUNNING")
                add_machine(self.client, self.client.get_run(self.run_id))  # its fits may now be two machines'
                write_plan(plan, {"run_id": self.run_id, "tracking_uri": self.uri}, merge=state)
                return
            except Exception:  # noqa: BLE001 - the store lost the run: start a new one
                self.run_id = None
        exp = experiment_id(self.client, self.uri, tracking_cfg.experiment)
        tags = {**provenance_tags(), "mgglass_role": "cv", "mgglass_cv": plan.name}
        self.run_id = self.client.create_run(exp, run_name=plan.name, tags=tags).info.run_id
        from mlflow.entities import Param

        params = {"configs": json.dumps(plan.configs), "overrides": " ".join(plan.overrides), "seeds": json.dumps(plan.seeds),
                  "data_root": str(plan.data_root), "level_key": plan.level_key, "reference": plan.reference,
                  **{f"fold.{f.name}": f"train {','.join(map(glass_stem, f.train))}; val {','.join(map(glass_stem, f.val))}"
                     for f in plan.folds}}
        self.client.log_batch(self.run_id, params=[Param(k[:250], v[:6000]) for k, v in params.items()])
        write_plan(plan, {"run_id": self.run_id, "tracking_uri": self.uri})

    def finish(self, plan: Plan, rows: list[dict], aggregates: list[dict], files: list[Path], status: str) -> None:
        from mlflow.entities import Metric, Param

        ts = int(time.time() * 1000)
        metrics = []
        partners = {r["model"]: f"with_{metric_name(r['partner'])}" for r in rows if r.get("partner")}  # a --with pair's prefix
        for a in aggregates:
            prefix = "reference" if a["model"] == "reference" else partners.get(a["model"], "cv")
            metrics += [Metric(f"{prefix}/r_mean", a["r_mean"], ts, 0), Metric(f"{prefix}/r_worst", a["r_worst"], ts, 0),
                        Metric(f"{prefix}/r2_mean", a["r2_mean"], ts, 0)]
            if np.isfinite(a["r2_level_mean"]):
                metrics.append(Metric(f"{prefix}/r2_level_mean", a["r2_level_mean"], ts, 0))
        for r in rows:
            if r["seed"] in ("ensemble", "0") or r["model"] == "reference":
                tag = ("reference" if r["model"] == "reference" else partners.get(r["model"])
                       or ("ensemble" if r["seed"] == "ensemble" else "fold"))
                metrics += [Metric(f"{tag}/{r['held_out']}/{k}", float(r[k]), ts, 0) for k in ("r", "r2", "mae") if np.isfinite(r[k])]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)
        members = [(f"{f.name}-s{s}", _finished(plan.fold_dir(f, s))) for f in plan.folds for s in plan.seeds]
        known = set(self.client.get_run(self.run_id).data.params)  # MLflow params cannot be logged twice
        new = [Param(f"members.{name}", json.dumps({"run_id": r.get("run_id"), "checkpoint": r.get("best_model_path")}))
               for name, r in members if r is not None and f"members.{name}" not in known]
        if new:
            self.client.log_batch(self.run_id, params=new)
        for path in files:
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path), "cv")
        self.client.set_terminated(self.run_id, status=status)


def read_plan(plan: Plan) -> dict | None:
    try:
        return json.loads((plan.out_dir / PLAN_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_plan(plan: Plan, extra: dict, merge: dict | None = None) -> None:
    """``cv.json``: the plan's identity and ``extra``; the folds of an earlier invocation (``merge``) are kept."""
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    tmp = plan.out_dir / (PLAN_FILE + ".tmp")
    state = {**plan.identity(), **extra}
    state["validation"] = {**((merge or {}).get("validation") or {}), **state["validation"]}
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(plan.out_dir / PLAN_FILE)


def check_same_plan(plan: Plan) -> None:
    """A rerun under the same name must run the same fits (so it resumes them, not mixes them)."""
    state = read_plan(plan)
    if not state:
        return
    mine = plan.identity()
    for key in ("configs", "overrides", "data_root"):
        if state.get(key) != mine[key]:
            raise CVError(f"cross-validation {plan.name!r} was started with {key} {state.get(key)!r}, not {mine[key]!r} "
                          f"({plan.out_dir / PLAN_FILE}); rerun it as it was, or give another --name")
    for fold, val in mine["validation"].items():
        if fold in state.get("validation", {}) and state["validation"][fold] != val:
            raise CVError(f"cross-validation {plan.name!r}: fold {fold} was validated on {state['validation'][fold]}, "
                          f"not {val}; rerun it with the same --val, or give another --name")
