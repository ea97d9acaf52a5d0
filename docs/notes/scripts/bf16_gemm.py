"""bfloat16 against float32 for the EGAT edge block's GEMM shapes (260,000 edges of an 8000-atom
glass, 32 channels, 8 heads x 32), one thread, the two alternated five times, medians
(docs/notes/benchmarks.md, "Not reached").

    python docs/notes/scripts/bf16_gemm.py
"""

import statistics
import time

import torch

torch.set_num_threads(1)
E = 260_000
for m, k, n, what in ((E, 32, 256, "projection"), (E, 256, 32, "its input gradient"), (32, E, 256, "its weight gradient")):
    a32, b32 = torch.randn(m, k), torch.randn(k, n)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    for _ in range(2):
        a32 @ b32, a16 @ b16
    t32, t16 = [], []
    for _ in range(5):
        t = time.perf_counter()
        a32 @ b32
        t32.append(time.perf_counter() - t)
        t = time.perf_counter()
        a16 @ b16
        t16.append(time.perf_counter() - t)
    f32, f16 = statistics.median(t32), statistics.median(t16)
    gflop = 2 * m * k * n / 1e9
    print(f"{what} [{m}x{k}]@[{k}x{n}]: float32 {f32 * 1e3:.1f} ms ({gflop / f32:.0f} GFLOP/s), "
          f"bfloat16 {f16 * 1e3:.1f} ms ({gflop / f16:.0f} GFLOP/s), {f32 / f16:.2f}x")
