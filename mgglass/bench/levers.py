"""python -m mgglass.bench levers: each speed lever against the path it replaced, side by side in one process.

    python -m mgglass.bench levers --ckpt_path CKPT [--glass train0] [--reps 7] [--threads 2]

On one 8000-atom glass and the checkpoint's network, the SymGNN training step (forward, MSE,
backward) and whole-glass prediction are timed with the levers switched off and on one by one, and
prediction by ranges of atoms (glasses above 16,384 atoms) on that glass replicated 2×2×2. The
configurations take turns within every repeat, so a machine that slows down slows them alike; the
median of ``--reps`` is reported with its ratio to "before". Every lever is a class switch that
tests pin to the reference path (``tests/test_fused.py``, ``tests/test_symgnn.py``), so the numbers are the
same either way.
One JSON line per configuration.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

from mgglass.bench import DEFAULT_DATA
from mgglass.bench.scaling import replicated_glass
from mgglass.data import glass_to_data, read_glass
from mgglass.data.order import ordered_for_prediction, spatially_ordered
from mgglass.inference import DST_RANGE, predict_glass
from mgglass.models import egat, fused, symgnn
from mgglass.runtime import keep_freed_memory
from mgglass.task import graph_settings, load_task

BY_RANGES = "predict by ranges, ×8"
# (benchmark, configuration, {switch: on}); switches are class attributes (see _switch)
CONFIGS = [
    ("train step", "before", {"encoders": False, "order": False}),
    ("train step", "spatial atom order", {"encoders": False, "order": True}),
    ("train step", "+ fused edge encoders (opt-in)", {"encoders": True, "order": True}),
    ("predict", "before", {"encoders": False, "edge_block": False}),
    ("predict", "fused edge blocks (eval)", {"encoders": False, "edge_block": True}),
    ("predict", "+ fused |x| branch (opt-in)", {"encoders": True, "edge_block": True}),
    (BY_RANGES, "before: each range's edges encoded afresh", {"range_pairs": False}),
    (BY_RANGES, "each edge pair encoded once", {"range_pairs": True}),
]


def _switch(on: dict) -> None:
    if "encoders" in on:
        symgnn.Symmetrizer.fused = fused.MLPBlock.fused = on["encoders"]
    if "edge_block" in on:
        egat.EGATLayer.fused_eval = on["edge_block"]
    if "range_pairs" in on:
        symgnn.RangeEncoder.paired = on["range_pairs"]


def run(ckpt: str, glass: str, reps: int, threads: int) -> list[dict]:
    keep_freed_memory()  # as the entry points do
    torch.set_num_threads(threads)
    task, hp = load_task(Path(ckpt), "cpu")
    species, cutoff, self_loops = graph_settings(hp)
    path = DEFAULT_DATA / (glass if glass.endswith(".pickle") else f"{glass}.pickle")  # train0 or train0.pickle
    data = glass_to_data(read_glass(path, species=species), cutoff, species, self_loops)
    big = ordered_for_prediction(glass_to_data(replicated_glass(f"{path.stem}x8", species), cutoff, species, self_loops), 0)
    data.y_norm = (data.y - data.y.mean()) / data.y.std()
    batches = {False: Batch.from_data_list([data]), True: Batch.from_data_list([spatially_ordered(data)[0]])}
    net = task.net

    def train_step(on):
        net.train()
        net.zero_grad(set_to_none=True)
        b = batches[on.get("order", False)]
        torch.nn.functional.mse_loss(net(b), b.y_norm).backward()

    def predict(_on):
        predict_glass(task, data)

    def predict_big(_on):  # the model's by-range path itself: predict_glass takes it only when given chunk_atoms
        net.eval()
        net.predict_by_dst(big, DST_RANGE)

    jobs = {"train step": train_step, "predict": predict, BY_RANGES: predict_big}
    defaults = {"encoders": symgnn.Symmetrizer.fused, "edge_block": egat.EGATLayer.fused_eval,
                "range_pairs": symgnn.RangeEncoder.paired}
    times: dict[int, list[float]] = {i: [] for i in range(len(CONFIGS))}
    try:
        for rep in range(reps + 1):  # the first round warms up
            for i, (bench, _, on) in enumerate(CONFIGS):
                _switch(on)
                torch.manual_seed(rep)
                t = time.perf_counter()
                jobs[bench](on)
                if rep:
                    times[i].append(time.perf_counter() - t)
    finally:
        _switch(defaults)
    rows, before = [], {}
    for i, (bench, name, _) in enumerate(CONFIGS):
        median = statistics.median(times[i])
        before.setdefault(bench, median)
        g = big if bench == BY_RANGES else data
        rows.append({"bench": bench, "config": name, "atoms": g.num_nodes, "edges": int(g.edge_index.shape[1]),
                     "threads": threads, "reps": reps, "median_s": median, "min_s": min(times[i]),
                     "vs_before": median / before[bench]})
    return rows


def table(rows: list[dict]) -> list[str]:
    """Markdown rows of :func:`run`'s output."""
    out = ["| benchmark | configuration | median s | best s | × before |", "|---|---|---|---|---|"]
    out += [f"| {r['bench']} | {r['config']} | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['vs_before']:.2f} |" for r in rows]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mgglass.bench levers", description=__doc__.split("\n\n")[2])
    p.add_argument("--ckpt_path", required=True, help="a SymGNN checkpoint (its network is timed)")
    p.add_argument("--glass", default="train0", help="released glass to time on (default train0, 8000 atoms)")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if not Path(args.ckpt_path).is_file():
        print(f"mgglass.bench levers: {args.ckpt_path}: no such checkpoint", file=sys.stderr)
        return 2
    for row in run(args.ckpt_path, args.glass, args.reps, args.threads):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
