import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The released glasses sit beside the project (CI has them there too).
CUZR = Path(os.environ.get("MGGLASS_DATA_DIR") or ROOT.parent / "shared" / "data" / "cuzr")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Tests never touch the user's cache; one cache per session keeps graph builds shared.
    monkeypatch.setenv("MGGLASS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def cuzr_dir() -> Path:
    if not (CUZR / "train0.pickle").is_file():
        pytest.skip(f"released Cu64Zr36 glasses not found in {CUZR}")
    return CUZR


@pytest.fixture
def synthetic_batch():
    """A Batch of two small synthetic glasses (128 and 96 atoms) with labels and y_norm."""
    from torch_geometric.data import Batch

    from mgglass.data import glass_to_data, make_glass

    graphs = []
    for n, seed in ((128, 1), (96, 2)):
        d = glass_to_data(make_glass(n, seed=seed))
        d.y_norm = (d.y - 1.5) / 0.2
        graphs.append(d)
    return Batch.from_data_list(graphs)


def as_after_training(model):
    """``model`` with its batch norms' running statistics off their initial values (drawn from the
    global RNG), as after training: eval-mode paths must use them, and folded or fused ones must agree."""
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model
