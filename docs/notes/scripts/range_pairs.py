"""SymGNN prediction by ranges of atoms on train0 replicated 4×4×4 (512,000 atoms), with each edge pair
encoded once (``RangeEncoder``, what ``predict_by_dst`` does) and with every range's edges encoded afresh
(what it did before), alternated in one process; best and all times, and the largest difference
(docs/notes/benchmarks.md#amd-prediction).

    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/range_pairs.py CKPT [GLASS] [ROUNDS]

GLASS: ``train0x64`` (default), ``train0x8`` (64,000 atoms), ... as ``mgglass.bench scaling`` names them.
"""

import sys
import time

import torch

from mgglass.bench.scaling import task_and_graph
from mgglass.data.order import ordered_for_prediction
from mgglass.inference import DST_RANGE
from mgglass.models.symgnn import RangeEncoder

task, data, _ = task_and_graph(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "train0x64", 2)
task.eval()
data = ordered_for_prediction(data, 0)
net = task.net


def by_ranges(paired: bool):
    """predict_by_dst with each edge pair encoded once, or every range's edges afresh (the path it replaced)."""
    RangeEncoder.paired = paired
    try:
        return net.predict_by_dst(data, DST_RANGE)
    finally:
        RangeEncoder.paired = True


ways = {"each pair once": lambda: by_ranges(True), "afresh": lambda: by_ranges(False)}
times, outs = {k: [] for k in ways}, {}
with torch.no_grad():
    for _ in range(int(sys.argv[3]) if len(sys.argv) > 3 else 3):
        for k, fn in ways.items():
            t = time.perf_counter()
            outs[k] = fn()
            times[k].append(time.perf_counter() - t)
print(f"{data.num_nodes} atoms; largest difference {float((outs['each pair once'] - outs['afresh']).abs().max()):.2e} (normalised)")
for k, ts in times.items():
    print(f"{k}: best {min(ts):.2f} s ({', '.join(f'{t:.2f}' for t in ts)}), {min(ts) / data.num_nodes * 1e6:.1f} µs per atom")
