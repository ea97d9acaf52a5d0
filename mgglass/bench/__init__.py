"""Benchmarks (not tests): ``python -m mgglass.bench {graph,models,fit,accuracy,invariance}``."""

import os
from pathlib import Path

# The released glasses: $MGGLASS_DATA_DIR, else ../shared/data/cuzr beside the project (as in CI).
DEFAULT_DATA = Path(os.environ.get("MGGLASS_DATA_DIR") or Path(__file__).resolve().parents[3] / "shared" / "data" / "cuzr")
