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
        # "epoch   1" is printed when epoch 2 starts, i.e. after last.ckpt of epoch 1 was written.
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
