"""Several fits starting together on a fresh SQLite MLflow store all get their runs."""

import subprocess
import sys

import pytest

SCRIPT = """
import sys
from mgglass.tracking import open_client
c = open_client(sys.argv[1])
print(len(c.search_experiments()))
"""


@pytest.mark.slow  # eight processes racing to create one store: ~17 s on 2 cores
def test_parallel_first_opening_of_a_fresh_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    results = [p.communicate(timeout=240) + (p.returncode,) for p in procs]
    for out, err, rc in results:
        assert rc == 0, err[-2000:]
        assert out.strip() == "1"  # the Default experiment of one consistent store
    assert (tmp_path / "mlflow.db.lock").is_file()


def test_a_run_shorter_than_the_sampling_interval_still_gets_system_metrics(tmp_path):
    # MLflow's monitor publishes after a full interval; a run that ends sooner (a smoke fit on a fast
    # machine) had an empty "System metrics" tab, and CI's smoke test failed on it.
    from types import SimpleNamespace

    from mgglass.tracking import MLflowTracker, TrackingConfig

    tracker = MLflowTracker(TrackingConfig(root=str(tmp_path), system_metrics=3600.0), tmp_path / "ckpt")
    tracker.setup(SimpleNamespace(is_global_zero=True), None, "fit")
    tracker.on_fit_start(None, None)
    tracker.finish()
    cpu = tracker.client.get_metric_history(tracker.run_id, "system/cpu_utilization_percentage")
    assert len(cpu) == 1 and cpu[0].step == 0 and 0 <= cpu[0].value <= 100
    assert tracker.client.get_run(tracker.run_id).info.status == "FINISHED"
