"""Running a study's trials: each one a ``python -m mgglass.fit`` subprocess on its own devices.

Workers are threads of the sweep process, each holding one device slot (a group of
``devices_per_trial`` GPUs, or a share of the CPU cores), driving Optuna's own ``optimize`` loop
(heartbeats, stale-trial detection and retries included). A trial's parameters become dotted
overrides on the sweep's configs, so a trial is exactly the fit a user would run by hand.

After a ``kill -9`` of the sweep its trials die too (:func:`mgglass.sweep.trial.watch_parent`) and
stay RUNNING in the storage. The next invocation on the same host fails those whose sweep process
is gone at once and queues their parameters again (``max_retry`` times, with Optuna's
``RetryHeartbeatStaleTrialCallback``); trials of other hosts are left to heartbeats.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from mgglass.sweep.spec import SweepSpec
from mgglass.sweep.trial import ENV, TrialContext, read_result


class TrialFailed(Exception):
    """A trial's fit exited non-zero (its log names why)."""


@dataclass
class Slot:
    """What one worker's trials run on."""

    accelerator: str  # "gpu" or "cpu"
    devices: int
    gpu_ids: tuple[int, ...] = ()
    threads: int = 1

    def env(self) -> dict[str, str]:
        if self.accelerator == "gpu":
            return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, self.gpu_ids))}
        n = str(self.threads)
        return {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}

    def overrides(self) -> list[str]:
        args = [f"--trainer.accelerator={self.accelerator}", f"--trainer.devices={self.devices}"]
        if self.devices > 1:
            args.append("--trainer.strategy=ddp")
        return args

    def describe(self) -> str:
        if self.accelerator == "gpu":
            return f"GPU {','.join(map(str, self.gpu_ids))}"
        return f"{self.devices} CPU process(es) x {self.threads} thread(s)"


def plan_slots(spec: SweepSpec, gpu_count: int | None = None, cpu_count: int | None = None) -> list[Slot]:
    """One slot per worker: GPUs split into groups of ``devices_per_trial``; on CPU, cores shared out."""
    if gpu_count is None:
        import torch

        gpu_count = torch.cuda.device_count()
    cpu_count = cpu_count or os.cpu_count() or 1
    d = spec.devices_per_trial
    use_gpu = spec.accelerator in ("gpu", "cuda") or (spec.accelerator == "auto" and gpu_count > 0)
    if use_gpu:
        if gpu_count < d:
            raise spec.fail("devices_per_trial", f"{d} GPUs per trial, but {gpu_count} visible")
        workers = gpu_count // d if spec.workers == "auto" else spec.workers
        if workers * d > gpu_count:
            raise spec.fail("workers", f"{workers} workers x {d} GPUs need {workers * d}, but {gpu_count} visible")
        return [Slot("gpu", d, tuple(range(w * d, (w + 1) * d))) for w in range(workers)]
    workers = max(1, min(2, cpu_count // d)) if spec.workers == "auto" else spec.workers
    threads = max(1, cpu_count // (workers * d))
    return [Slot("cpu", d, threads=threads) for _ in range(workers)]


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
        self.slots: queue.Queue[Slot] = queue.Queue()
        for s in slots:
            self.slots.put(s)
        self.n_workers = len(slots)
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    # -- one trial ----------------------------------------------------------------------------
    def command(self, values: dict, number: int, slot: Slot) -> list[str]:
        args = [sys.executable, "-m", "mgglass.fit"]
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
        slot = self.slots.get()
        try:
            ckpt_dir = self.trial_root / f"trial-{trial.number}"
            trial.set_user_attr("checkpoint_dir", str(ckpt_dir))
            ctx = TrialContext(
                storage=self.storage_url, study=self.spec.study, trial_id=trial._trial_id, number=trial.number,
                metric=self.spec.metric, direction=self.spec.direction, pruner=self.spec.pruner,
                parent_run_id=self.parent_run_id, sweep_pid=os.getpid(),
            )
            log = self.trial_root / f"trial-{trial.number}.log"
            print(f"mgglass.sweep: trial {trial.number} on {slot.describe()}: {values} (log: {log})", flush=True)
            rc = self._run(self.command(values, trial.number, slot), {**slot.env(), ENV: ctx.to_env()}, log)
        finally:
            self.slots.put(slot)
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

    def _run(self, args: list[str], env: dict[str, str], log: Path) -> int:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            # Its own session: a trial's DDP ranks form one process group that can be ended together.
            proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            with self._lock:
                self._procs.add(proc)
            try:
                return proc.wait()
            finally:
                with self._lock:
                    self._procs.discard(proc)

    def stop_all(self) -> None:
        """End every running trial's process group (on Ctrl-C or an error in the sweep)."""
        import signal

        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

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
            self.stop_all()
            raise


def finished_count(study) -> int:
    """Trials that count towards the budget: COMPLETE or PRUNED."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a reused pid that is not a sweep does not keep a trial alive
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"mgglass" in cmdline


def reap_dead_local_trials(study, max_retry: int) -> list[int]:
    """Fail the RUNNING trials whose sweep process on this host is gone, and queue each for a retry
    (Optuna's retry callback: same parameters, ``failed_trial`` attribute). Returns their numbers."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    from mgglass.sweep.spec import quiet_experimental

    host, reaped = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("sweep_pid")
        if t.user_attrs.get("sweep_host") != host or not pid or pid == os.getpid() or _alive(int(pid)):
            continue
        if study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
            with quiet_experimental():
                RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, study._storage.get_trial(t._trial_id))
            reaped.append(t.number)
    if reaped:
        print(f"mgglass.sweep: trial(s) {reaped} were interrupted (their sweep died): failed, queued again", flush=True)
    return reaped
