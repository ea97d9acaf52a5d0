"""A SymGNN training step (forward, MSE, backward) with the EGAT edge block's GEMMs in float32 and in
bfloat16, the two alternated six times (the first round warms up), medians, and how far the
bfloat16 gradient is from the float32 one (docs/notes/benchmarks.md, "bfloat16 in the edge block").
The bfloat16 path is not in the package: apply its patch first, on a scratch checkout.

    git apply docs/notes/scripts/bf16_edge_block.diff
    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/bf16_step.py CKPT [THREADS]
    git checkout mgglass/models/egat.py
"""

import statistics
import sys
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

from mgglass.bench import DEFAULT_DATA
from mgglass.data import glass_to_data, read_glass
from mgglass.data.order import spatially_ordered
from mgglass.models import egat
from mgglass.runtime import keep_freed_memory
from mgglass.task import graph_settings, load_task

keep_freed_memory()
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
task, hp = load_task(Path(sys.argv[1]), "cpu")
species, cutoff, self_loops = graph_settings(hp)
data = glass_to_data(read_glass(DEFAULT_DATA / "train0.pickle", species=species), cutoff, species, self_loops)
data.y_norm = (data.y - data.y.mean()) / data.y.std()
batch = Batch.from_data_list([spatially_ordered(data)[0]])
net = task.net


def step(low):
    egat.LOW = low
    net.train()
    net.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    torch.nn.functional.mse_loss(net(batch), batch.y_norm).backward()
    return torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])


times, grads = {None: [], torch.bfloat16: []}, {}
for rep in range(6):
    for low, ts in times.items():
        t = time.perf_counter()
        grads[low] = step(low)
        if rep:
            ts.append(time.perf_counter() - t)
g32, g16 = grads[None], grads[torch.bfloat16]
for low, ts in times.items():
    print(f"{'bfloat16' if low else 'float32'}: median {statistics.median(ts):.3f} s ({', '.join(f'{t:.3f}' for t in ts)})")
print(f"gradient: relative error {((g16 - g32).norm() / g32.norm()).item():.4f}, "
      f"cosine {torch.nn.functional.cosine_similarity(g32, g16, 0).item():.5f}")
