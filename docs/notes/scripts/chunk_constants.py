"""The cache-sized chunk constants as they are, 4× larger and 4× smaller: a warm prediction of test0
(3,000 atoms) and a training step on train0, each variant in turn per round, medians
(docs/notes/benchmarks.md#amd-prediction). Chunking changes no number beyond float rounding.

    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/chunk_constants.py CKPT [ROUNDS]
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
from mgglass.inference import predict_glass
from mgglass.models import egat, fused
from mgglass.runtime import keep_freed_memory
from mgglass.task import graph_settings, load_task, read_graph

keep_freed_memory()
torch.set_num_threads(2)
task, hp = load_task(Path(sys.argv[1]), "cpu")
net = task.net
species, cutoff, self_loops = graph_settings(hp)
test0 = read_graph(DEFAULT_DATA / "test0.pickle", hp)
train0 = glass_to_data(read_glass(DEFAULT_DATA / "train0.pickle", species=species), cutoff, species, self_loops)
train0.y_norm = (train0.y - train0.y.mean()) / train0.y.std()
batch = Batch.from_data_list([spatially_ordered(train0)[0]])
symmetrisers = [m for m in net.modules() if hasattr(m, "chunk_rows")]
KERNELS = ((fused, "CHUNK_FLOATS"), (egat._EdgeTransform, "chunk_floats"), (egat._EdgeBlock, "chunk_floats"),
           (egat._GatherWeightScatter, "chunk_floats"))
DEFAULTS = [getattr(o, a) for o, a in KERNELS] + [m.chunk_rows for m in symmetrisers]


def scale(f: float) -> None:
    for (o, a), d in zip(KERNELS, DEFAULTS):
        setattr(o, a, int(d * f))
    for m, d in zip(symmetrisers, DEFAULTS[len(KERNELS):]):
        m.chunk_rows = int(d * f)


def train_step() -> None:
    net.train()
    net.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    torch.nn.functional.mse_loss(net(batch), batch.y_norm).backward()


variants = {"as they are": 1, "4x": 4, "1/4": 0.25}
times = {(k, w): [] for k in variants for w in ("predict", "train step")}
for rep in range(int(sys.argv[2]) if len(sys.argv) > 2 else 6):
    for k, f in variants.items():
        scale(f)
        for what, fn in (("predict", lambda: predict_glass(task, test0)), ("train step", train_step)):
            t = time.perf_counter()
            fn()
            if rep:  # the first round warms up
                times[(k, what)].append(time.perf_counter() - t)
scale(1)
for (k, what), ts in times.items():
    print(f"{what}, constants {k}: median {statistics.median(ts):.3f} s, best {min(ts):.3f} s")
