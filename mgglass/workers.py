"""Fits as child processes on shares of the machine: a sweep's trials and a cross-validation's folds.

A *slot* is what one child fit runs on (a group of GPUs, or a share of the CPU cores); a
:class:`ProcessPool` hands slots to workers and runs each child in its own session, so a DDP
child's ranks can be ended together. A child learns its parent's pid from ``MGGLASS_PARENT_PID``
and ends itself when the parent dies (``kill -9``), instead of training on as an orphan. A finished
fit leaves ``result.json`` beside its checkpoints (:func:`write_result`): how the parent tells a
finished child from an interrupted one when it is run again.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PARENT_PID_ENV = "MGGLASS_PARENT_PID"
RESULT_FILE = "result.json"


@dataclass
class Slot:
    """What one child fit runs on."""

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


class SlotError(ValueError):
    """Workers and devices that do not fit the machine: ``where`` names the setting."""

    def __init__(self, where: str, msg: str):
        super().__init__(f"{where}: {msg}")
        self.where, self.msg = where, msg


def plan_slots(accelerator: str = "auto", devices_per_child: int = 1, workers: int | str = "auto",
               gpu_count: int | None = None, cpu_count: int | None = None) -> list[Slot]:
    """One slot per worker: GPUs split into groups of ``devices_per_child``; on CPU the cores are
    shared out (``auto``: two workers at most, each with half the cores: on 2 cores two one-thread
    fits finish sooner together than one after the other on two threads)."""
    if gpu_count is None:
        import torch

        gpu_count = torch.cuda.device_count()
    cpu_count = cpu_count or os.cpu_count() or 1
    d = devices_per_child
    use_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpu_count > 0)
    if use_gpu:
        if gpu_count < d:
            raise SlotError("devices_per_trial", f"{d} GPUs per trial, but {gpu_count} visible")
        n = gpu_count // d if workers == "auto" else int(workers)
        if n * d > gpu_count:
            raise SlotError("workers", f"{n} workers x {d} GPUs need {n * d}, but {gpu_count} visible")
        return [Slot("gpu", d, tuple(range(w * d, (w + 1) * d))) for w in range(n)]
    n = max(1, min(2, cpu_count // d)) if workers == "auto" else int(workers)
    threads = max(1, cpu_count // (n * d))
    return [Slot("cpu", d, threads=threads) for _ in range(n)]


class ProcessPool:
    """Slots shared by worker threads, and the child processes running in them."""

    def __init__(self, slots: list[Slot]):
        self.slots: queue.Queue[Slot] = queue.Queue()
        for s in slots:
            self.slots.put(s)
        self.size = len(slots)
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    @contextmanager
    def slot(self) -> Iterator[Slot]:
        """A free slot for the duration of the block (waits for one)."""
        s = self.slots.get()
        try:
            yield s
        finally:
            self.slots.put(s)

    def run(self, args: list[str], env: dict[str, str], log: Path, cwd: str | Path | None = None) -> int:
        """Run ``args`` (stdout and stderr to ``log``) with ``env`` added and this process as its
        watched parent; returns the exit code."""
        log.parent.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, **env, PARENT_PID_ENV: str(os.getpid())}
        with open(log, "w") as out:
            # Its own session: a child's DDP ranks form one process group that can be ended together.
            proc = subprocess.Popen(args, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
            with self._lock:
                self._procs.add(proc)
            try:
                return proc.wait()
            finally:
                with self._lock:
                    self._procs.discard(proc)

    def stop_all(self) -> None:
        """End every running child's process group (on Ctrl-C or an error in the parent)."""
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live mgglass process (a reused pid of another program does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a reused pid of another program is not ours
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"mgglass" in cmdline


def watch_parent(parent_pid: int | None = None, every_s: float = 1.0) -> None:
    """When the process that started this fit dies (``kill -9``), end this fit's whole process group
    (its DDP ranks too) rather than train on as an orphan. ``parent_pid`` defaults to
    ``$MGGLASS_PARENT_PID``; acts only in the process the parent started, which leads its own
    session (DDP ranks it launches do not)."""
    if parent_pid is None:
        raw = os.environ.get(PARENT_PID_ENV, "")
        parent_pid = int(raw) if raw.isdigit() else None
    if not parent_pid or os.getsid(0) != os.getpid():
        return

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(every_s)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def write_result(ckpt_dir: Path, **result) -> None:
    """``result.json`` beside a fit's checkpoints, written atomically (a kill leaves the old or none)."""
    tmp = Path(ckpt_dir) / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(Path(ckpt_dir) / RESULT_FILE)


def read_result(ckpt_dir: Path) -> dict | None:
    """The finished fit's ``result.json`` in ``ckpt_dir``, or None (not finished, or unreadable)."""
    try:
        return json.loads((Path(ckpt_dir) / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
