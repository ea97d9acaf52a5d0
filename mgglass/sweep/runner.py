"""Running a study's trials: each one a ``python -m mgglass.sweep.trial`` subprocess (a fit with the
trial's reporter) on its own devices.

Workers are threads of the sweep process, each holding one device slot (a group of
``devices_per_trial`` GPUs, or a share of the CPU cores), driving Optuna's own ``optimize`` loop
(heartbeats, stale-trial detection and retries included). A trial's parameters become dotted
overrides on the sweep's configs, so a trial is exactly the fit a user would run by hand.

After a ``kill -9`` of the sweep its trials die too (:func:`mgglass.workers.watch_parent`) and
stay RUNNING in the storage. The next invocation on the same host fails those whose sweep process
is gone at once and queues their parameters again (``max_retry`` times, with Optuna's
``RetryHeartbeatStaleTrialCallback``); trials of other hosts are left to heartbeats.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

from mgglass import workers
from mgglass.compat import fail_trial, frozen_trial, trial_id
from mgglass.sweep.spec import SweepSpec, quiet_experimental
from mgglass.sweep.trial import ENV, TrialContext
from mgglass.workers import ProcessPool, Slot, SlotError, process_alive, read_result


class TrialFailed(Exception):
    """A trial's fit exited non-zero (its log names why)."""


def plan_slots(spec: SweepSpec, gpu_count: int | None = None, cpu_count: int | None = None) -> list[Slot]:
    """One slot per worker for ``spec`` (see :func:`mgglass.workers.plan_slots`)."""
    try:
        return workers.plan_slots(spec.accelerator, spec.devices_per_trial, spec.workers, gpu_count, cpu_count)
    except SlotError as e:
        raise spec.fail(e.where, e.msg) from None


def value_arg(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def dotted_args(values: dict) -> list[str]:
    return [f"--{k}={value_arg(v)}" for k, v in values.items()]


class Runner:
    """Runs trials of ``study`` for ``spec`` until the budget is reached.

    Args:
        spec: the sweep.
        study: the loaded ``optuna.Study``.
        storage_url: handed to trials, which report to the same storage.
        tracking_root: folder of the trials' checkpoints (``checkpoints/<study>/trial-<n>``).
        slots: from :func:`plan_slots`.
        parent_run_id: the MLflow run the trials nest under.
    """

    def __init__(self, spec, study, storage_url, tracking_root, slots, parent_run_id=None):
        self.spec, self.study, self.storage_url = spec, study, storage_url
        self.trial_root = Path(tracking_root) / "checkpoints" / spec.study
        self.parent_run_id = parent_run_id
        self.pool = ProcessPool(slots)
        self.n_workers = self.pool.size

    # -- one trial ----------------------------------------------------------------------------
    def command(self, values: dict, number: int, slot: Slot) -> list[str]:
        args = [sys.executable, "-m", "mgglass.sweep.trial"]  # mgglass.fit's arguments, with the trial's reporter
        for c in self.spec.configs:
            args += ["--config", c]
        args += dotted_args(self.spec.overrides)
        args += dotted_args(values)
        # The score is the value the fit's checkpoint keeps: make it watch the objective.
        mode = "max" if self.spec.direction == "maximize" else "min"
        args += [f"--checkpoint.monitor={self.spec.metric}", f"--checkpoint.mode={mode}"]
        args += [f"--tracking.run_name=trial-{number}", f"--checkpoint.dirpath={self.trial_root / f'trial-{number}'}"]
        return args + slot.overrides()

    def objective(self, trial) -> float:
        import optuna

        values = {p.key: p.suggest(trial) for p in self.spec.space}
        trial.set_user_attr("sweep_host", socket.gethostname())
        trial.set_user_attr("sweep_pid", os.getpid())
        with self.pool.slot() as slot:
            ckpt_dir = self.trial_root / f"trial-{trial.number}"
            trial.set_user_attr("checkpoint_dir", str(ckpt_dir))
            ctx = TrialContext(
                storage=self.storage_url, study=self.spec.study, trial_id=trial_id(trial), number=trial.number,
                metric=self.spec.metric, direction=self.spec.direction, pruner=self.spec.pruner,
                parent_run_id=self.parent_run_id, sweep_pid=os.getpid(),
            )
            log = self.trial_root / f"trial-{trial.number}.log"
            print(f"mgglass.sweep: trial {trial.number} on {slot.describe()}: {values} (log: {log})", flush=True)
            rc = self.pool.run(self.command(values, trial.number, slot), {**slot.env(), ENV: ctx.to_env()}, log)
        result = read_result(ckpt_dir) if rc == 0 else None
        if result is None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
            raise TrialFailed(f"trial {trial.number}: fit exited {rc}: {tail[0] if tail else 'no output'} (see {log})")
        trial.set_user_attr("mlflow_run_id", result.get("run_id"))
        trial.set_user_attr("epochs", result.get("epochs"))
        if result["state"] == "PRUNED":
            raise optuna.TrialPruned(f"pruned after {result.get('epochs')} epochs")
        if result.get("value") is None:
            raise TrialFailed(f"trial {trial.number}: no {self.spec.metric} was logged")
        return float(result["value"])

    # -- the loop -----------------------------------------------------------------------------
    def finished(self) -> int:
        return finished_count(self.study)

    def run(self, timeout: float | None = None) -> None:
        """Run trials until ``spec.trials`` have finished (counting earlier invocations') or the
        timeout passes. Failed trials do not count; a round in which every trial failed ends the
        sweep (a broken config would otherwise fail forever)."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                reap_dead_local_trials(self.study, self.spec.max_retry)
                left = None if self.spec.trials is None else self.spec.trials - self.finished()
                remaining = None if deadline is None else deadline - time.monotonic()
                if (left is not None and left <= 0) or (remaining is not None and remaining <= 0):
                    return
                before = self.finished()
                self.study.optimize(
                    self.objective, n_trials=left, timeout=remaining, n_jobs=self.n_workers, catch=(TrialFailed,)
                )
                if self.finished() == before:
                    raise TrialFailed("every trial of the last round failed; see the trial logs")
        except BaseException:
            self.pool.stop_all()
            raise


def finished_count(study) -> int:
    """Trials that count towards the budget: COMPLETE or PRUNED."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def reap_dead_local_trials(study, max_retry: int) -> list[int]:
    """Fail the RUNNING trials whose sweep process on this host is gone, and queue each for a retry
    (Optuna's retry callback: same parameters, ``failed_trial`` attribute). Returns their numbers."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    host, reaped = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("sweep_pid")
        if t.user_attrs.get("sweep_host") != host or not pid or pid == os.getpid() or process_alive(int(pid)):
            continue
        if fail_trial(study, trial_id(t)):
            with quiet_experimental():
                RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, frozen_trial(study, trial_id(t)))
            reaped.append(t.number)
    if reaped:
        print(f"mgglass.sweep: trial(s) {reaped} were interrupted (their sweep died): failed, queued again", flush=True)
    return reaped
