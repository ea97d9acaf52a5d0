"""`mlflow ui` over the project's kind of store: start it on a free port, read the smoke run back
through the REST API, then stop the whole process tree (the server forks workers)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from test_fit import EPOCHS, smoke_fit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(base: str, endpoint: str, **query):
    url = f"{base}{endpoint}?{urllib.parse.urlencode(query)}" if query else base + endpoint
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_mlflow_ui_serves_smoke_run(tmp_path_factory):
    smoke = smoke_fit(tmp_path_factory, "smoke-a")
    assert smoke["rc"] == 0, smoke["stderr"][-3000:]
    port = _free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow), "ui", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{smoke['root']}/mlflow.db"]
    log = tmp_path_factory.getbasetemp() / "mlflow-ui.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 150
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                exp = _get(base, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="smoke")["experiment"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("mlflow ui did not answer: " + log.read_text()[-2000:])
                time.sleep(0.5)
        req = urllib.request.Request(
            base + "/api/2.0/mlflow/runs/search",
            data=json.dumps({"experiment_ids": [exp["experiment_id"]]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            runs = json.loads(r.read())["runs"]
        assert len(runs) == 1
        run = runs[0]
        rid = run["info"]["run_id"]
        assert run["info"]["status"] == "FINISHED"
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        # Names the UI groups into train / val / test / sym chart sections.
        assert {"test/r", "test/mae", "val/r", "train/loss", "train/lr", "sym/reflect_p"} <= metrics.keys()
        assert not any(k.startswith(("test_", "val_", "train_")) for k in metrics)
        assert -1 <= metrics["test/r"] <= 1 and metrics["test/mae"] > 0
        hist = _get(base, "/api/2.0/mlflow/metrics/get-history", run_id=rid, metric_key="val/loss")["metrics"]
        assert sorted(int(m["step"]) for m in hist) == list(range(EPOCHS))
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert tags["model"] == "SymGNN" and len(tags["data_hash"]) == 64
        top = {f["path"] for f in _get(base, "/api/2.0/mlflow/artifacts/list", run_id=rid)["files"]}
        assert {"config.yaml", "checkpoints", "test"} <= top
        test = {f["path"] for f in _get(base, "/api/2.0/mlflow/artifacts/list", run_id=rid, path="test")["files"]}
        assert {"test/parity.png", "test/predictions.csv", "test/predictions.extxyz"} <= test
        ckpts = {f["path"] for f in _get(base, "/api/2.0/mlflow/artifacts/list", run_id=rid, path="checkpoints")["files"]}
        assert "checkpoints/last.ckpt" in ckpts and any(p.startswith("checkpoints/best-") for p in ckpts)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)
        deadline = time.monotonic() + 15
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.5)
    assert not _group_alive(proc.pid), "mlflow ui workers survived"
