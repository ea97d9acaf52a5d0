"""SymGNN training steps (forward, MSE, backward) on train0 with the radius graph at several cutoffs,
side by side in one process: the default config's network, one per cutoff with the same seed, the
cutoffs taking turns in each of five rounds after a warm-up, medians (docs/notes/benchmarks.md#cutoff).

    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/cutoff_step.py THREADS 5.0,3.9,6.0
"""

import os
import statistics
import sys
import time

import torch
from torch_geometric.data import Batch

from mgglass.data import load_graph
from mgglass.models import build_model
from mgglass.runtime import keep_freed_memory

keep_freed_memory()
torch.set_num_threads(int(sys.argv[1]))
cutoffs = [float(c) for c in sys.argv[2].split(",")]
glass = os.path.join(os.environ.get("MGGLASS_DATA_DIR", "../shared/data/cuzr"), "train0.pickle")
# experiments/symgnn.yaml's model.net
init = {"hidden": 32, "heads": [8, 4, 2, 1], "dropout": 0.25, "distribution": "learned", "k_train": 2, "k_eval": 16,
        "edge_lengths": True, "cardinality": 0.03}
batches, models = {}, {}
for c in cutoffs:
    data = load_graph(glass, cutoff=c)
    data.y_norm = (data.y - data.y.mean()) / data.y.std()
    batches[c] = Batch.from_data_list([data])
    torch.manual_seed(0)
    models[c] = build_model("symgnn", **init).train()


def step(c: float) -> float:
    model, batch = models[c], batches[c]
    t = time.perf_counter()
    model.zero_grad(set_to_none=True)
    torch.nn.functional.mse_loss(model(batch), batch.y_norm).backward()
    return time.perf_counter() - t


for c in cutoffs:
    step(c)  # warm-up
times = {c: [] for c in cutoffs}
for _ in range(5):
    for c in cutoffs:
        times[c].append(step(c))
for c in cutoffs:
    print(f"cutoff {c} Å: {batches[c].num_edges} edges, median {statistics.median(times[c]):.3f} s, best {min(times[c]):.3f} s")
