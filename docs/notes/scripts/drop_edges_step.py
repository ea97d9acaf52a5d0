"""SymGNN training steps (forward, MSE, backward) on train0 for the default config's network with
DropEdge (each step on a random share 1 - p of the edges), side by side in one process: the variants
take turns in each of six rounds (the first warms up), medians (docs/notes/benchmarks.md, "DropEdge").
Needs the patch docs/notes/scripts/drop_edges.diff (`git apply`), which adds SymGNN's `drop_edges`.

    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/drop_edges_step.py [THREADS]
"""

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
from mgglass.models.symgnn import SymGNN
from mgglass.runtime import keep_freed_memory

VARIANTS = {"default": {}, "drop_edges=0.5": {"drop_edges": 0.5}, "drop_edges=0.3": {"drop_edges": 0.3}}

keep_freed_memory()
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
init = yaml.safe_load(Path("experiments/symgnn.yaml").read_text())["model"]["net"]["init_args"]
species = ("Cu", "Zr")
data = glass_to_data(read_glass(DEFAULT_DATA / "train0.pickle", species=species), 5.0, species, False)
data.y_norm = (data.y - data.y.mean()) / data.y.std()
batch = Batch.from_data_list([spatially_ordered(data)[0]])
nets = {k: SymGNN(**{**init, **v}) for k, v in VARIANTS.items()}
times = {k: [] for k in nets}
for rep in range(6):
    for k, net in nets.items():
        net.train()
        net.zero_grad(set_to_none=True)
        torch.manual_seed(rep)
        t = time.perf_counter()
        torch.nn.functional.mse_loss(net(batch), batch.y_norm).backward()
        if rep:
            times[k].append(time.perf_counter() - t)
base = statistics.median(times["default"])
for k, ts in times.items():
    m = statistics.median(ts)
    print(f"{k}: median {m:.3f} s ({m / base:.2f}x)")
