"""Restricted unpickling: pickles run code on load, so only numpy arrays and plain containers pass."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

# (module, name) pairs a pickled dict of numpy arrays needs; numpy 2 renamed numpy.core to numpy._core.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("builtins", "bytearray"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for a global outside the allow-list; nothing of it was run."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        # numpy pickles name their dtype classes, e.g. numpy.dtypes.Float32DType
        if module == "numpy.dtypes" and name.endswith("DType"):
            return super().find_class(module, name)
        raise UnsafePickleError(f"refused to load global {module}.{name} (only numpy arrays and plain containers are allowed)")


def safe_load(path: str | Path):
    """Load a pickle that may hold only numpy arrays, numbers, strings and containers."""
    data = Path(path).read_bytes()
    return _RestrictedUnpickler(io.BytesIO(data)).load()
