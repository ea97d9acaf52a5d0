"""Process-wide settings the entry points apply before any work (``fit``, ``test``, ``validate``, ``bench``,
``predict``, ``explain``): glibc's allocator, the library warnings that only clutter a log, the
output folder made before the work whose results it holds, and the one-line description of the
machine that benchmark pages and fit runs carry.

glibc serves every allocation above ~32 MB with a fresh ``mmap`` and returns it to the kernel on
free, so each [edges, channels] activation (33–266 MB per 8000-atom glass) is page-faulted in anew
on every step: ~6× the cost of the arithmetic on it. ``keep_freed_memory`` makes glibc allocate
from its heap and keep freed memory for reuse. Measured on 2 CPU cores, per training step on an
8000-atom glass: SymGNN 2.75 → 1.85 s, SchNet 1.77 → 0.72 s; peak RSS ~5% higher. RSS then stays
at its peak until the process exits. Set ``MGGLASS_MALLOC=system`` to keep glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys
from pathlib import Path

from mgglass.compat import drop_lightning_tips

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Stop glibc from mmap-ing large blocks and from trimming the heap. True when it took effect
    (Linux with glibc and ``MGGLASS_MALLOC`` not ``system``); idempotent."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("MGGLASS_MALLOC", "").lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the trim threshold is an int, so "never" is INT_MAX (2 GiB).
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied


def quiet_warnings() -> None:
    """Drop warnings that are expected here and only clutter a log (MGGLASS_DEBUG=1 keeps them)."""
    if os.environ.get("MGGLASS_DEBUG"):
        return
    import warnings

    drop_lightning_tips()
    for pattern in (
        ".*does not have many workers.*",
        ".*exists and is not empty.*",  # the run folder holds config.yaml and mlflow_run.json
        ".*isinstance.treespec, LeafSpec.*",
        ".*It is recommended to use `self.log.*sync_dist=True.*",  # epoch values are synced by torchmetrics
        ".*recommended to use `Trainer.devices=1`.*",  # our sampler never repeats a glass across ranks
    ):
        warnings.filterwarnings("ignore", pattern)


def quiet_banner() -> None:
    """Keep Lightning's info lines (seed, GPU and TPU available, ...) off stderr, for commands whose
    stderr is one line per glass or the error."""
    import logging

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


# CPU features that decide which speed levers a machine has (bfloat16 products need AVX512-BF16 or
# AMX; docs/notes/benchmarks.md): two CPUs sold under one name ("AMD EPYC") can differ in them.
_CPU_FEATURES = (("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"), ("amx_tile", "AMX"))


def cpu_description(cpuinfo: str) -> str:
    """One line for the CPU of ``/proc/cpuinfo``'s text: its model name, family and model (which tell
    two generations sold under one name apart) and its vector extensions beyond AVX2."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:  # the first processor's block is enough
                break
            continue
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name", "unknown CPU")
    flags = set(fields.get("flags", "").split())
    details = []
    if "cpu family" in fields and "model" in fields:
        details.append(f"family {fields['cpu family']} model {fields['model']}")
    if flags:
        extra = [label for flag, label in _CPU_FEATURES if flag in flags]
        base = "AVX2" if "avx2" in flags else "no AVX2"
        details.append(" + ".join([base, *extra]) if extra else f"{base}, no AVX-512")
    return f"{name} ({'; '.join(details)})" if details else name


def machine() -> str:
    """This machine in one line, for benchmark pages and run tags: CPU (:func:`cpu_description`),
    cores, memory, OS, and the CUDA device when there is one."""
    try:
        cpu = cpu_description(Path("/proc/cpuinfo").read_text())
    except OSError:
        cpu = platform.processor() or "unknown CPU"
    mem = ""
    try:
        kb = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    out = f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.machine()}"
    import torch

    if torch.cuda.is_available():
        out += f"; GPU {torch.cuda.get_device_name(0)}"
    return out


class OutputError(ValueError):
    """An output that cannot be written where asked, said in one line."""


def output_dir(path, option: str):
    """``path`` (a folder) made now with its parents, before the work whose results go there: a folder
    that cannot be made is one line naming ``option``, not a traceback after minutes of work."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{option} {path}: cannot make this folder ({e.strerror or e})") from None
    return path
