"""test0 end to end (read, graph at the checkpoint's cutoff, predict), as `python -m mgglass.bench
latency` measures it, for several checkpoints alternated in one warm process: medians of 10
(docs/notes/benchmarks.md#cutoff).

    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/cutoff_latency.py THREADS CKPT [CKPT ...]
"""

import os
import statistics
import sys
import time
from pathlib import Path

import torch

from mgglass.inference import predict_glass
from mgglass.runtime import keep_freed_memory
from mgglass.task import load_task, read_graph

keep_freed_memory()
torch.set_num_threads(int(sys.argv[1]))
path = Path(os.environ.get("MGGLASS_DATA_DIR", "../shared/data/cuzr")) / "test0.pickle"
ckpts = sys.argv[2:]
tasks = [load_task(Path(c), "cpu") for c in ckpts]


def once(task_hp) -> tuple[float, int]:
    t = time.perf_counter()
    data = read_graph(path, task_hp[1])
    predict_glass(task_hp[0], data)
    return time.perf_counter() - t, data.num_edges


for task_hp in tasks:
    once(task_hp)  # warm-up
times = [[] for _ in tasks]
for _ in range(10):
    for i, task_hp in enumerate(tasks):
        times[i].append(once(task_hp)[0])
for ckpt, ts, task_hp in zip(ckpts, times, tasks):
    print(f"{ckpt}: {once(task_hp)[1]} edges, median {statistics.median(ts):.4f} s, best {min(ts):.4f} s")
