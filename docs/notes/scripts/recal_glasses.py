"""How much do the glasses that batch-norm statistics come from before each validation move the
selection metric? (docs/notes/benchmarks.md#recalibration)

For each checkpoint: recalibrate its batch norms over the first two training glasses of its fit (what
``recalibrate_bn.max_glasses: 2`` did before each validation), the first, the second, and all of them
(what the kept checkpoints get), and print the validation glasses' pooled r, their mean prediction and
the seconds each recalibration took, one JSON line per checkpoint.

    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/recal_glasses.py CKPT [CKPT ...]
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from mgglass.callbacks.calibration import recalibrate
from mgglass.inference import predict_glass
from mgglass.runtime import keep_freed_memory
from mgglass.task import load_task, read_graph

DATA = Path(os.environ.get("MGGLASS_DATA_DIR", "../shared/data/cuzr"))


def main(paths: list[str]) -> None:
    keep_freed_memory()
    graphs = {}

    def graph(name, hp):
        if name not in graphs:
            graphs[name] = read_graph(DATA / name, hp)
        return graphs[name]

    for ck in paths:
        task, hp = load_task(Path(ck), "cpu")
        train, val = [graph(n, hp) for n in hp["train"]], [graph(n, hp) for n in hp["val"]]
        y = np.concatenate([g.y.double().numpy() for g in val])
        out = {"ckpt": ck, "train": hp["train"]}
        for label, used in (("first2", train[:2]), ("first1", train[:1]), ("second1", train[1:2]), ("all", train)):
            t = time.perf_counter()
            recalibrate(task.net, used)
            seconds = time.perf_counter() - t
            p = np.concatenate([predict_glass(task, g) for g in val])
            out[label] = {"val_r": round(float(np.corrcoef(y, p)[0, 1]), 5), "mean": round(float(p.mean()), 4), "s": round(seconds, 2)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
