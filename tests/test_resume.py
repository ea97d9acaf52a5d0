"""Faults: SIGKILL a running fit, rerun the same command with --ckpt_path last: training continues
from the last checkpoint into the same MLflow run, and every epoch's metrics are there exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from test_fit import ROOT, SMOKE, fit_env, only_run

EPOCHS = 8


def test_sigkill_then_resume_continues_the_same_run(tmp_path):
    args = [sys.executable, "-m", "mgglass.fit", "--config", SMOKE, f"--tracking.root={tmp_path}",
            f"--trainer.max_epochs={EPOCHS}"]
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=fit_env(tmp_path), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        # "epoch   1" is printed right after last.ckpt of epoch 1 was written.
        while "epoch   1 " not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "fit did not reach epoch 2"
            time.sleep(0.05)
        assert proc.poll() is None, "fit ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    ckpt_dir = Path(tmp_path) / "checkpoints" / "smoke"
    killed_at = torch.load(ckpt_dir / "last.ckpt", weights_only=False, map_location="cpu")["epoch"]
    assert killed_at < EPOCHS - 1
    c, run = only_run(tmp_path)
    assert run.info.status == "RUNNING"  # nobody closed it
    run_id = run.info.run_id

    again = subprocess.run([*args, "--ckpt_path", "last"], cwd=ROOT, env=fit_env(tmp_path), capture_output=True,
                           text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    # Training continued after the checkpointed epoch rather than starting over.
    printed = [int(ln.split()[1]) for ln in again.stdout.splitlines() if ln.startswith("epoch ")]
    assert printed and printed[0] > 0 and printed[-1] == EPOCHS - 1, printed
    c, run = only_run(tmp_path)  # still one run
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert run.data.tags["resumed"] == "1"
    for key in ("train_loss", "val_loss", "val_r", "val_mae", "lr", "epoch_time_s"):
        steps = sorted(m.step for m in c.get_metric_history(run_id, key))
        assert steps == list(range(EPOCHS)), (key, steps)  # none lost, none duplicated
    assert len(c.get_metric_history(run_id, "test_r")) == 1


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
        hist = sorted((m.step, m.value) for m in again.client.get_metric_history(again.run_id, key))
        assert [s for s, _ in hist] == [0, 1, 2, 3]
        assert [v for _, v in hist] == [history[e][key] for e in range(4)]
