"""Faults: SIGKILL a running fit, rerun the same command with --ckpt_path last: training continues
from the last checkpoint into the same MLflow run, and every epoch's metrics are there exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _cli import run_module
from test_fit import ROOT, SMOKE, fit_env, only_run

from mgglass.runtime import machine
from mgglass.tracking import ui_name

EPOCHS = 8


def _start(args, tmp_path, log):
    with open(log, "w") as out:
        return subprocess.Popen(args, cwd=ROOT, env=fit_env(tmp_path), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _rerun(args, tmp_path):
    """The fit's command again, to its end (a fresh process: tests/_cli.py)."""
    assert args[:3] == [sys.executable, "-m", "mgglass.fit"]
    return run_module("mgglass.fit", args[3:], cwd=ROOT, env=fit_env(tmp_path), timeout=300)


def _kill_after(proc, log, epoch: int) -> None:
    """SIGKILL the fit's process group once its log shows ``epoch`` (printed after its checkpoint)."""
    try:
        deadline = time.monotonic() + 240
        while f"epoch {epoch:3d} " not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"fit did not reach epoch {epoch}"
            time.sleep(0.05)
        assert proc.poll() is None, "fit ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def test_kill_after_the_best_epoch_resumes_from_the_last_epoch(tmp_path):
    """The best epoch is 0 (checkpoints watch ``epoch``, mode min), so no top-k checkpoint is saved
    after it: last.ckpt must still follow every epoch, and the resume must not redo epochs."""
    epochs = 12
    args = [sys.executable, "-m", "mgglass.fit", "--config", SMOKE, f"--tracking.root={tmp_path}",
            f"--trainer.max_epochs={epochs}", "--checkpoint.monitor=epoch", "--checkpoint.mode=min"]
    log = tmp_path / "first.log"
    proc = _start(args, tmp_path, log)
    _kill_after(proc, log, 5)
    printed = [int(ln.split()[1]) for ln in log.read_text().splitlines() if ln.startswith("epoch ")]
    ckpt_dir = Path(tmp_path) / "checkpoints" / "smoke"
    killed_at = torch.load(ckpt_dir / "last.ckpt", weights_only=False, map_location="cpu")["epoch"]
    assert killed_at >= printed[-1] >= 5  # not the best epoch 0
    assert [p.name for p in ckpt_dir.glob("best-*.ckpt")] == ["best-epoch=000.ckpt"]
    again = _rerun([*args, "--ckpt_path", "last"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = [int(ln.split()[1]) for ln in again.stdout.splitlines() if ln.startswith("epoch ")]
    assert resumed[0] == killed_at + 1 and resumed[-1] == epochs - 1, resumed
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=False, map_location="cpu")["epoch"] == epochs - 1
    c, run = only_run(tmp_path)
    assert run.info.status == "FINISHED"
    steps = sorted(m.step for m in c.get_metric_history(run.info.run_id, ui_name("train_loss")))
    assert steps == list(range(epochs))

    # Resuming from the older best checkpoint: the epochs logged after it belong to a model that is
    # gone, so the continuing model gets its own run whose history is its own, each epoch once.
    old_loss = {m.step: m.value for m in c.get_metric_history(run.info.run_id, ui_name("train_loss"))}
    more = [a for a in args if not a.startswith("--trainer.max_epochs")] + ["--trainer.max_epochs=3"]
    third = _rerun([*more, "--ckpt_path", str(ckpt_dir / "best-epoch=000.ckpt")], tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    exp = c.get_experiment_by_name("smoke")
    runs = {r.info.run_id: r for r in c.search_runs([exp.experiment_id])}
    assert len(runs) == 2
    old = runs[run.info.run_id]
    new = next(r for r in runs.values() if r.info.run_id != run.info.run_id)
    assert old.info.status == "KILLED" and old.data.tags["superseded_by"] == new.info.run_id
    assert new.data.tags["resumed_from_run"] == run.info.run_id and new.info.status == "FINISHED"
    hist = sorted((m.step, m.value) for m in c.get_metric_history(new.info.run_id, ui_name("train_loss")))
    assert [s for s, _ in hist] == [0, 1, 2]
    assert hist[0][1] == pytest.approx(old_loss[0])  # epoch 0 is the checkpoint's own history
    assert len(c.get_metric_history(new.info.run_id, ui_name("test_r"))) == 1


def test_sigkill_then_resume_continues_the_same_run(tmp_path):
    args = [sys.executable, "-m", "mgglass.fit", "--config", SMOKE, f"--tracking.root={tmp_path}",
            f"--trainer.max_epochs={EPOCHS}"]
    log = tmp_path / "first.log"
    # "epoch   1" is printed right after last.ckpt of epoch 1 was written.
    _kill_after(_start(args, tmp_path, log), log, 1)
    ckpt_dir = Path(tmp_path) / "checkpoints" / "smoke"
    killed_at = torch.load(ckpt_dir / "last.ckpt", weights_only=False, map_location="cpu")["epoch"]
    assert killed_at < EPOCHS - 1
    c, run = only_run(tmp_path)
    assert run.info.status == "RUNNING"  # nobody closed it
    run_id = run.info.run_id
    assert run.data.tags["machine"] == machine()
    c.set_tag(run_id, "machine", "Old CPU, 2 cores")  # as if the first epochs ran elsewhere

    again = _rerun([*args, "--ckpt_path", "last"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    # Training continued after the checkpointed epoch rather than starting over.
    printed = [int(ln.split()[1]) for ln in again.stdout.splitlines() if ln.startswith("epoch ")]
    assert printed and printed[0] > 0 and printed[-1] == EPOCHS - 1, printed
    c, run = only_run(tmp_path)  # still one run
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert run.data.tags["resumed"] == "1"
    assert run.data.tags["machine"] == f"Old CPU, 2 cores | {machine()}"  # epoch times from two machines
    for key in ("train_loss", "val_loss", "val_r", "val_mae", "lr", "epoch_time_s"):
        steps = sorted(m.step for m in c.get_metric_history(run_id, ui_name(key)))
        assert steps == list(range(EPOCHS)), (key, steps)  # none lost, none duplicated
    assert len(c.get_metric_history(run_id, ui_name("test_r"))) == 1
    # The same command once more on the finished fit: nothing to train, the same checkpoint tested, and
    # still one logged model with its test metrics once.
    third = _rerun([*args, "--ckpt_path", "last"], tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert not [ln for ln in third.stdout.splitlines() if ln.startswith("epoch ")]
    c, run = only_run(tmp_path)
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert len([lm for lm in c.search_logged_models([run.info.experiment_id]) if lm.source_run_id == run_id]) == 1
    assert len(c.get_metric_history(run_id, ui_name("test_r"))) == 1


def test_resumed_tracker_backfills_checkpointed_epochs_once(tmp_path):
    """Killed after saving epoch 3's checkpoint but before logging epochs 2-3: the resumed tracker
    logs exactly the missing epochs from the checkpoint's history."""
    from types import SimpleNamespace

    from mgglass.tracking import MLflowTracker, TrackingConfig

    cfg = TrackingConfig(root=str(tmp_path), experiment="backfill", run_name="r")
    trainer = SimpleNamespace(is_global_zero=True)
    history = {e: {"train_loss": 1.0 / (e + 1), "val_loss": 2.0 / (e + 1)} for e in range(4)}
    first = MLflowTracker(cfg, tmp_path / "ck", params={"a": "1"})
    first.setup(trainer, None, "fit")
    first._flush(SimpleNamespace(history={e: history[e] for e in (0, 1)}))
    # (process killed here; the checkpoint already holds epochs 0-3)
    again = MLflowTracker(cfg, tmp_path / "ck", resume=True, params={"a": "1"})
    again.setup(trainer, None, "fit")
    assert again.run_id == first.run_id
    again._flush(SimpleNamespace(history=history))
    again._flush(SimpleNamespace(history=history))  # idempotent
    for key in ("train_loss", "val_loss"):
        hist = sorted((m.step, m.value) for m in again.client.get_metric_history(again.run_id, ui_name(key)))
        assert [s for s, _ in hist] == [0, 1, 2, 3]
        assert [v for _, v in hist] == [history[e][key] for e in range(4)]
