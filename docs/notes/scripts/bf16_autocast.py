"""bfloat16 end to end as Lightning's `--trainer.precision bf16-mixed` would run it (torch.autocast on
the CPU), SymGNN training steps on train0 side by side in one process: float32; the edge block's
GEMMs in bfloat16 (bf16_edge_block.diff); autocast for everything else; both. Autocast cannot enter
the EGAT layers (their fused kernels write float32 buffers) or the symmetriser's narrow first layer,
so those run in float32 here. Medians of 5 after a warm-up, and each variant's gradient against
float32's (docs/notes/benchmarks.md#step-round-3).

    git apply docs/notes/scripts/bf16_edge_block.diff
    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/bf16_autocast.py [THREADS]
"""

import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml
from torch_geometric.data import Batch

from mgglass.bench import DEFAULT_DATA
from mgglass.data import glass_to_data, read_glass
from mgglass.data.order import spatially_ordered
from mgglass.models import egat
from mgglass.models import symgnn as sg
from mgglass.runtime import keep_freed_memory


def float32(fn):
    """``fn`` with autocast off and its floating tensor arguments in float32."""
    def wrapped(*a):
        with torch.autocast("cpu", enabled=False):
            return fn(*[x.float() if torch.is_tensor(x) and x.is_floating_point() else x for x in a])
    return wrapped


egat.EGATLayer.update = float32(egat.EGATLayer.update)
sg._NarrowLinear.apply = float32(sg._NarrowLinear.apply)

keep_freed_memory()
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
init = yaml.safe_load(Path("experiments/symgnn.yaml").read_text())["model"]["net"]["init_args"]
species = ("Cu", "Zr")
data = glass_to_data(read_glass(DEFAULT_DATA / "train0.pickle", species=species), 5.0, species, False)
data.y_norm = (data.y - data.y.mean()) / data.y.std()
batch = Batch.from_data_list([spatially_ordered(data)[0]])
torch.manual_seed(0)
net = sg.SymGNN(**init)
variants = {"float32": (None, False), "edge block bf16": (torch.bfloat16, False),
            "autocast elsewhere": (None, True), "both": (torch.bfloat16, True)}
times, grads = {k: [] for k in variants}, {}
for rep in range(6):
    for k, (low, autocast) in variants.items():
        egat.LOW = low
        net.train()
        net.zero_grad(set_to_none=True)
        torch.manual_seed(rep)
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
            out = net(batch)
        torch.nn.functional.mse_loss(out.float(), batch.y_norm).backward()
        if rep:
            times[k].append(time.perf_counter() - t)
        grads[k] = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
base = statistics.median(times["float32"])
for k, ts in times.items():
    m, g = statistics.median(ts), grads[k] - grads["float32"]
    print(f"{k}: median {m:.3f} s ({m / base:.2f}x), |dg|/|g| {float(g.norm() / grads['float32'].norm()):.3f}")
