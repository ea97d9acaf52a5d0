"""float32 GEMM rates of this CPU for the shapes a SymGNN training step runs (docs/notes/benchmarks.md#gemm-floor):
the EGAT edge block's products chunk by chunk in cache ([4096 × 40] @ [40 × 256], [4096 × 256] @ [256 × 32]),
the projection and weight gradient over all 259,838 edges of train0, and φ's [K·E × 32] @ [32 × 32]. Medians of 20.

    python docs/notes/scripts/gemm_rates.py [THREADS]
"""

import statistics
import sys
import time

import torch

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
E = 259_838
SHAPES = {  # name: (a, b) with a @ b
    "edge map, in-cache chunk [4096 x 40] @ [40 x 256]": ((4096, 40), (40, 256)),
    "projection, in-cache chunk [4096 x 256] @ [256 x 32]": ((4096, 256), (256, 32)),
    "projection, all edges [E x 256] @ [256 x 40]": ((E, 256), (256, 40)),
    "weight gradient, all edges [40 x E] @ [E x 256]": ((40, E), (E, 256)),
    "phi's second layer [2E x 32] @ [32 x 32]": ((2 * E, 32), (32, 32)),
}
for name, (sa, sb) in SHAPES.items():
    a, b = torch.randn(*sa), torch.randn(*sb)
    a @ b
    times = []
    for _ in range(20):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    s = statistics.median(times)
    print(f"{name}: {s * 1e3:.2f} ms, {2 * sa[0] * sa[1] * sb[1] / s / 1e9:.0f} GFLOP/s")
