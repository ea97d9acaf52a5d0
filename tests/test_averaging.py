"""EMA of the weights (mgglass.callbacks.EMA) and late dropout (mgglass.callbacks.LateDropout):
validation, checkpoints and the test after a fit all score the averaged weights with their own
batch-norm statistics; dropout is off before its start epoch and at its rate after."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn


def test_late_dropout_follows_the_epoch():
    from mgglass.callbacks import LateDropout
    from mgglass.models.dropout import Dropout

    module = nn.Sequential(nn.Linear(2, 2), Dropout(0.25), nn.Dropout(0.1))
    cb = LateDropout(start_epoch=3)
    cb.setup(None, module, "fit")
    rates = []
    for epoch in (0, 2, 3, 7, 1):  # the last: a resumed fit's epoch gets its own rate back
        cb.on_train_epoch_start(SimpleNamespace(current_epoch=epoch), module)
        rates.append((module[1].p, module[2].p))
    assert rates == [(0.0, 0.0), (0.0, 0.0), (0.25, 0.1), (0.25, 0.1), (0.0, 0.0)]
    with pytest.raises(ValueError, match="start_epoch"):
        LateDropout(start_epoch=-1)


def test_configs_naming_the_callbacks_old_paths_still_load(tmp_path):
    # Saved run configs (mlruns/**/config.yaml) and users' configs name the callbacks by the paths
    # they had before mgglass/callbacks/.
    from test_fit import SMOKE

    from mgglass.callbacks import EMA, LateDropout
    from mgglass.cli import build

    cfg = tmp_path / "old.yaml"
    cfg.write_text("trainer:\n  callbacks:\n    - class_path: mgglass.averaging.EMA\n      init_args: {decay: 0.8}\n"
                   "    - class_path: mgglass.regularization.LateDropout\n      init_args: {start_epoch: 2}\n")
    cli = build(["--config", SMOKE, "--config", str(cfg), f"--tracking.root={tmp_path}", "--tracking.enabled=false"])
    kinds = {type(cb): cb for cb in cli.trainer.callbacks}
    assert EMA in kinds and kinds[LateDropout].start_epoch == 2


def test_ema_checkpoint_holds_averaged_weights_with_their_own_statistics(tmp_path):
    from test_fit import SMOKE, metrics_of, run_cli, training_graphs

    from mgglass.callbacks.calibration import batch_norms, recalibrate
    from mgglass.task import EBTask

    cfg = tmp_path / "ema.yaml"
    cfg.write_text("trainer:\n  callbacks:\n    - class_path: mgglass.callbacks.EMA\n      init_args: {decay: 0.8}\n"
                   "    - class_path: mgglass.callbacks.LateDropout\n      init_args: {start_epoch: 2}\n")
    p = run_cli("mgglass.fit", ["--config", SMOKE, "--config", str(cfg), f"--tracking.root={tmp_path}",
                                "--tracking.run_name=ema"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    best = next((tmp_path / "checkpoints" / "ema").glob("best-epoch=*.ckpt"))
    ckpt = torch.load(best, map_location="cpu", weights_only=False)
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert max((averaged[k] - raw[k]).abs().max().item() for k in raw if k.endswith("weight")) > 1e-3
    # The saved statistics are exactly those recomputed for the averaged weights.
    task = EBTask.load_from_checkpoint(best, map_location="cpu")
    saved = [m.running_var.clone() for m in batch_norms(task.net)]
    recalibrate(task.net, training_graphs(ckpt))
    for s, m in zip(saved, batch_norms(task.net)):
        torch.testing.assert_close(m.running_var, s)
    # The fit's own test scored the averaged weights: a later mgglass.test of the checkpoint agrees.
    t = run_cli("mgglass.test", ["--ckpt_path", str(best), f"--tracking.root={tmp_path}"], tmp_path)
    assert t.returncode == 0, t.stderr[-3000:]
    got = json.loads(t.stdout.strip().splitlines()[-1])
    logged = metrics_of(tmp_path, prefixes=("test_",))
    assert got["test_r"] == pytest.approx(logged["test_r"], rel=1e-5)
    assert "current_model_state" not in t.stderr and "Found current_model_state" not in p.stdout + p.stderr

