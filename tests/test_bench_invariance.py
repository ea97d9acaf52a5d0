"""bench invariance: per-atom spread of predictions over random O(3) transforms of the test glasses."""

import json
from pathlib import Path

import pytest
import torch
from test_fit import smoke_fit

from mgglass.bench.invariance import orthogonal


def test_transforms_are_orthogonal_half_reflections():
    q = orthogonal(8, seed=3)
    eye = torch.eye(3, dtype=q.dtype).expand(8, 3, 3)
    torch.testing.assert_close(q @ q.transpose(1, 2), eye)
    assert torch.linalg.det(q).round().tolist() == [1.0, -1.0] * 4


def test_spread_of_a_smoke_checkpoint(tmp_path_factory, capsys, monkeypatch):
    from mgglass.bench.invariance import main

    smoke = smoke_fit(tmp_path_factory, "smoke-a")
    assert smoke["rc"] == 0, smoke["stderr"][-3000:]
    monkeypatch.setenv("MGGLASS_CACHE_DIR", str(Path(smoke["root"]).parent / "cache"))
    best = str(next((Path(smoke["root"]) / "checkpoints" / "smoke").glob("best-epoch=*.ckpt")))
    capsys.readouterr()
    assert main(["--ckpt_path", best, "--transforms", "6"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["atoms"] == 128 and out["transforms"] == 6  # smoke: 2 test glasses of 64 atoms
    # SymGNN is invariant in expectation only (k_eval = 2 here): a spread, but a finite one.
    assert 0 < out["pred_spread_mean_ev"] < 5 * out["label_std_ev"]
    assert out["spread_over_label_std"] == pytest.approx(out["pred_spread_mean_ev"] / out["label_std_ev"])
    assert -1 <= out["r_of_mean_prediction"] <= 1
    assert main(["--ckpt_path", str(Path(best).with_name("missing.ckpt"))]) == 2
