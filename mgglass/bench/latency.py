"""Inference latency: one glass from file to per-atom EBs in a warm process.

    python -m mgglass.bench latency --ckpt_path CKPT [CKPT ...] [--input test0.pickle] [--repeats 10]

End to end is read (restricted unpickler / ase) + periodic radius graph (at each checkpoint's cutoff)
+ model in eval mode; model only is the last part. Medians over ``--repeats`` after one warm-up call,
one JSON line per checkpoint. Several checkpoints (e.g. two graph cutoffs) take turns in every repeat,
so a machine's drift over the run reaches them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from mgglass.inference import predict_glass
from mgglass.runtime import keep_freed_memory
from mgglass.task import PredictError, load_task, read_graph


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mgglass.bench latency", description=__doc__.split("\n\n")[1])
    p.add_argument("--ckpt_path", required=True, nargs="+", help="one or more checkpoints, timed in turn")
    p.add_argument("--input", default=None, help="default: test0.pickle in $MGGLASS_DATA_DIR")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    if len({Path(c).resolve() for c in args.ckpt_path}) < len(args.ckpt_path):  # as `mgglass.ensemble` compares them
        raise PredictError(f"--ckpt_path: a checkpoint is given twice ({' '.join(args.ckpt_path)})")
    keep_freed_memory()
    path = Path(args.input or Path(os.environ.get("MGGLASS_DATA_DIR", ".")) / "test0.pickle")
    tasks = [load_task(Path(c), "cpu") for c in args.ckpt_path]

    def end_to_end(task, hp):
        data = read_graph(path, hp)
        return data, predict_glass(task, data)

    graphs = [end_to_end(task, hp)[0] for task, hp in tasks]  # warm-up, and each checkpoint's graph
    e2e, model = [[] for _ in tasks], [[] for _ in tasks]
    for _ in range(args.repeats):
        for i, (task, hp) in enumerate(tasks):
            t0 = time.perf_counter()
            end_to_end(task, hp)
            e2e[i].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            predict_glass(task, graphs[i])
            model[i].append(time.perf_counter() - t0)
    for ckpt, data, e, m in zip(args.ckpt_path, graphs, e2e, model):
        print(json.dumps({
            "ckpt": ckpt, "input": str(path), "atoms": data.num_nodes, "edges": int(data.edge_index.shape[1]),
            "threads": torch.get_num_threads(), "end_to_end_s": statistics.median(e), "model_only_s": statistics.median(m),
            "repeats": args.repeats,
        }), flush=True)
    return 0
