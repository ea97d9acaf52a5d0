"""The time-to-accuracy benchmark: its selection rule, and that it leaves the fit it measures unchanged."""

import itertools
import json
from pathlib import Path

import pytest
from test_fit import SMOKE, client_for, only_run, run_cli, smoke_fit

from mgglass.bench.accuracy import selected_curve, summary
from mgglass.tracking import ui_name


def test_selected_model_is_the_best_validation_epoch_so_far():
    rows = [
        {"epoch": 0, "wall_s": 10.0, "val_r": 0.2, "test_r": 0.3},
        {"epoch": 1, "wall_s": 20.0, "val_r": 0.5, "test_r": 0.6},
        {"epoch": 2, "wall_s": 30.0, "val_r": 0.4, "test_r": 0.9},  # test is high, validation is not
        {"epoch": 3, "wall_s": 40.0, "val_r": 0.6, "test_r": 0.8},
    ]
    sel = selected_curve(rows)
    assert [r["selected_epoch"] for r in sel] == [0, 1, 1, 3]
    assert [r["selected_test_r"] for r in sel] == [0.3, 0.6, 0.6, 0.8]
    s = summary(rows, 0.75)
    assert s["reached"] and s["wall_s_to_threshold"] == 40.0 and s["epochs_to_threshold"] == 4
    assert s["selected_test_r"] == 0.8 and s["selected_val_r"] == 0.6
    assert not summary(rows, 0.85)["reached"] and summary(rows, 0.85)["wall_s_to_threshold"] is None


@pytest.mark.slow  # a benchmark's fit and curve: ~45 s on 2 cores
def test_benchmark_is_the_plain_fit_plus_a_curve(tmp_path_factory):
    plain = smoke_fit(tmp_path_factory, "smoke-a")
    assert plain["rc"] == 0, plain["stderr"][-3000:]
    base = tmp_path_factory.getbasetemp() / "bench-accuracy"
    base.mkdir()
    p = run_cli("mgglass.bench", ["accuracy", "--config", SMOKE, "--threshold", "-1", f"--tracking.root={base}"], base)
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout.strip().splitlines()[-1])
    out = Path(result["out"])
    assert out == base / "checkpoints" / "bench-accuracy"
    record = json.loads((out / "accuracy.json").read_text())
    assert (out / "accuracy.png").stat().st_size > 1000
    rows = record["rows"]
    assert [r["epoch"] for r in rows] == list(range(6))
    assert result["reached"] and result["epochs_to_threshold"] == 1
    assert all(b["wall_s"] > a["wall_s"] for a, b in itertools.pairwise(rows))
    # The same training as the plain fit: identical validation curve and final test metrics.
    c, run = only_run(base)
    _, ref = only_run(plain["root"])
    got = [m.value for m in sorted(c.get_metric_history(run.info.run_id, ui_name("val_r")), key=lambda m: m.step)]
    want = [m.value for m in sorted(client_for(plain["root"]).get_metric_history(ref.info.run_id, ui_name("val_r")),
                                    key=lambda m: m.step)]
    assert got == pytest.approx(want, rel=1e-6)
    assert [r["val_r"] for r in rows] == pytest.approx(want, rel=1e-6)
    assert run.data.metrics[ui_name("test_r")] == pytest.approx(ref.data.metrics[ui_name("test_r")], rel=1e-6)
    # The curve's test r at the selected epoch is what the fit's final test reports.
    assert rows[-1]["selected_test_r"] == pytest.approx(run.data.metrics[ui_name("test_r")], rel=1e-4)
    assert "bench/accuracy.png" in [f.path for f in c.list_artifacts(run.info.run_id, "bench")]
