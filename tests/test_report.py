"""python -m mgglass.report: seeds of one recipe form one row (mean ± std), the values are the runs'
logged test metrics, the paper's number sits beside each model, and the physical baselines are the
correlations of the released per-atom quantities with the EB."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_fit import only_run, run_cli, smoke_fit


def test_group_name_drops_the_seed_suffix():
    from mgglass.report import group_name

    assert group_name("symgnn-s2") == group_name("symgnn_seed11") == "symgnn"
    assert group_name("symgnn-d0") == "symgnn-d0"


def test_rows_average_over_seeds():
    from mgglass.report import render, table_rows

    recs = [
        {"model": "SymGNN", "group": "symgnn", "seed": str(s), "commit": "abc1234", "val_r": v, "epochs": 80,
         "test_r": t, "test_r2": 0.4, "test_mae": 0.2, "minutes": 20.0, "params": 1000}
        for s, v, t in ((0, 0.6, 0.78), (1, 0.62, 0.80), (2, 0.58, 0.76))
    ]
    recs.append({**recs[0], "model": "SpeciesMLP", "group": "mlp", "test_r": 0.05})
    rows = table_rows(recs)
    assert [r["model"] for r in rows] == ["SymGNN", "SpeciesMLP"]
    mean, std = rows[0]["test_r"]
    assert mean == pytest.approx(0.78) and std == pytest.approx(np.std([0.78, 0.80, 0.76], ddof=1))
    text = render(rows, [("per-atom potential energy (`pot`)", 0.013)], "sqlite:///x", 4, "abcdef0")
    assert "**0.780 ± 0.020**" in text and "0.7859 ± 0.0056 (SymGNN)" in text
    assert "| 3 (0,1,2) |" in text and "Not run yet" in text and "SchNet (0.7588)" in text
    assert "| per-atom potential energy (`pot`) | +0.013 |" in text


def test_report_reads_the_smoke_fit(tmp_path_factory, tmp_path):
    r = smoke_fit(tmp_path_factory, "smoke")
    assert r["rc"] == 0
    out = tmp_path / "results.md"
    p = run_cli("mgglass.report", ["--tracking_root", r["root"], "--experiment", "smoke", "--out", str(out), "--data_dir", str(tmp_path)], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout.strip().splitlines()[-1])["runs"] == 1
    _, run = only_run(r["root"])
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| SymGNN | smoke (smoke.yaml) |"))
    assert f"**{run.data.metrics['test_r']:.3f}**" in row and "0.7859" in row
    assert "Physical baselines" not in text  # no released data in --data_dir


def test_report_without_store_is_one_line_error(tmp_path):
    p = run_cli("mgglass.report", ["--tracking_root", str(tmp_path / "none")], tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "no MLflow store" in p.stderr


def test_physical_baselines_on_the_released_test_glass(cuzr_dir):
    from mgglass.report import physical_baselines

    r = dict(physical_baselines(Path(cuzr_dir)))
    assert r["per-atom potential energy (`pot`)"] == pytest.approx(0.013, abs=0.002)
    assert r["per-atom von Mises stress (`von`)"] == pytest.approx(-0.117, abs=0.002)
    assert all(abs(v) < 0.2 for v in r.values())  # local energetics and composition do not predict EBs
