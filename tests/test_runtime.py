"""keep_freed_memory: glibc keeps freed large blocks for reuse (checked in fresh processes); the machine
line that benchmark pages and run tags carry."""

import os
import subprocess
import sys

import pytest

# Allocate and free 256 MB in one block; print the resident set before, while held, and after.
PROBE = """
import sys
from mgglass.runtime import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else False
import torch

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

before = rss()
x = torch.ones(64 * 2**20)  # 256 MB, written so it is resident
held = rss()
del x
print(applied, round(held - before), round(rss() - before))
"""


def _probe(mode: str, **env) -> tuple[str, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env={**os.environ, **env}
    ).stdout.split()
    return out[0], int(out[1]), int(out[2])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_freed_memory_is_kept_for_reuse_only_when_tuned():
    applied, held, after = _probe("tuned")
    assert applied == "True" and held > 200
    assert after > 200  # not handed back to the kernel: the next step reuses it without page faults
    applied, held, after = _probe("system")
    assert applied == "False" and held > 200 and after < 50  # glibc's default: munmap on free


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_env_opt_out():
    applied, _, after = _probe("tuned", MGGLASS_MALLOC="system")
    assert applied == "False" and after < 50


ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx fma avx2

processor\t: 1
model name\t: another block, not read
"""


@pytest.mark.parametrize("extra, expected", [
    ("", "AMD EPYC (family 25 model 1; AVX2, no AVX-512)"),
    (" avx512f avx512_bf16", "AMD EPYC (family 25 model 1; AVX2 + AVX-512 + AVX512-BF16)"),
])
def test_cpu_description_tells_two_cpus_of_one_name_apart(extra, expected):
    from mgglass.runtime import cpu_description

    assert cpu_description(ZEN3.replace("avx2\n", f"avx2{extra}\n")) == expected


def test_cpu_description_without_details_is_the_name():
    from mgglass.runtime import cpu_description

    assert cpu_description("model name\t: Some CPU\n") == "Some CPU"
    assert cpu_description("") == "unknown CPU"
