"""Several fits starting together on a fresh SQLite MLflow store all get their runs."""

import subprocess
import sys

SCRIPT = """
import sys
from mgglass.tracking import open_client
c = open_client(sys.argv[1])
print(len(c.search_experiments()))
"""


def test_parallel_first_opening_of_a_fresh_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    results = [p.communicate(timeout=240) + (p.returncode,) for p in procs]
    for out, err, rc in results:
        assert rc == 0, err[-2000:]
        assert out.strip() == "1"  # the Default experiment of one consistent store
    assert (tmp_path / "mlflow.db.lock").is_file()
