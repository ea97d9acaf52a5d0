"""Inference latency: one glass from file to per-atom EBs in a warm process.

    python -m mgglass.bench latency --ckpt_path CKPT [--input test0.pickle] [--repeats 10]

End to end is read (restricted unpickler / ase) + periodic radius graph + model in eval mode; model
only is the last part. Medians over ``--repeats`` after one warm-up call, one JSON line.
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
from mgglass.task import load_task, read_graph


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mgglass.bench latency", description=__doc__.split("\n\n")[1])
    p.add_argument("--ckpt_path", required=True)
    p.add_argument("--input", default=None, help="default: test0.pickle in $MGGLASS_DATA_DIR")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    keep_freed_memory()
    path = Path(args.input or Path(os.environ.get("MGGLASS_DATA_DIR", ".")) / "test0.pickle")
    task, hp = load_task(Path(args.ckpt_path), "cpu")

    def end_to_end():
        data = read_graph(path, hp)
        return data, predict_glass(task, data)

    data, _ = end_to_end()  # warm-up
    e2e, model = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        end_to_end()
        e2e.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        predict_glass(task, data)
        model.append(time.perf_counter() - t0)
    print(json.dumps({
        "input": str(path), "atoms": data.num_nodes, "edges": int(data.edge_index.shape[1]),
        "threads": torch.get_num_threads(), "end_to_end_s": statistics.median(e2e), "model_only_s": statistics.median(model),
        "repeats": args.repeats,
    }), flush=True)
    return 0
