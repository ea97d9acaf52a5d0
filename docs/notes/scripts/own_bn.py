"""Test-time batch norm (AdaBN): does a glass the model never saw rank better when its batch norms
normalise with that glass's own statistics? (docs/notes/new-glasses.md#own-bn)

In training every step is one glass, so every batch norm normalises a glass's features with that
glass's own statistics; a checkpoint normalises any glass with the average over its training glasses.
A glass outside the training series (the held-out glasses of the grouped folds) then reaches the
network's nonlinearities shifted. Recomputing the statistics on the glass itself needs no labels, so a
user could do it on a new glass. Prints, per glass: r and R² with the checkpoint's statistics and with
the glass's own, R² of the latter moved to the former's mean, and R² of both moved onto the level line (mean EB = a + b * mean pot over the
glasses the fit saw, as ``mgglass.predict --level pot`` does), since a glass's own statistics remove
its level.

    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/own_bn.py CKPT SEEN HELD
    # SEEN, HELD: comma-separated glass names, e.g. train2,train3,train4,train5,train6 train0,train1
"""

import copy
import os
import sys
from pathlib import Path

import numpy as np
import torch

from mgglass.callbacks.calibration import recalibrate
from mgglass.inference import predict_glass
from mgglass.task.checkpoints import fit_graph, load_task, read_fit_glass

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
DATA = Path(os.environ.get("MGGLASS_DATA_DIR", "../shared/data/cuzr"))
ckpt, seen, held = Path(sys.argv[1]), sys.argv[2].split(","), sys.argv[3].split(",")


def r2(y, p):
    return 1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum()


task, hp = load_task(ckpt, "cpu")
glasses = {n: read_fit_glass(DATA / f"{n}.pickle", hp) for n in seen + held}  # read once: levels and graphs
pot = {n: g.extras["pot"].mean() for n, g in glasses.items()}
level = {n: g.labels.mean() for n, g in glasses.items()}
b, a = np.polyfit([pot[n] for n in seen], [level[n] for n in seen], 1)
print(f"{ckpt}")
print("| glass | role | r, checkpoint's statistics | r, the glass's own | R² checkpoint's | R² own | R² own at the checkpoint's mean | R² on the level line: checkpoint's / own | mean: label / checkpoint's / own |")
print("|---|---|---|---|---|---|---|---|---|")
for name in held + seen:
    g = fit_graph(glasses[name], hp)
    y = g.y.double().numpy()
    p0 = predict_glass(task, g)
    own = copy.deepcopy(task)
    recalibrate(own.net, [g])
    p1 = predict_glass(own.eval(), g)
    line = a + b * pot[name]
    r0, r1 = np.corrcoef(y, p0)[0, 1], np.corrcoef(y, p1)[0, 1]
    role = "held out" if name in held else "seen"
    print(f"| {name} | {role} | {r0:.3f} | {r1:.3f} | {r2(y, p0):.3f} | {r2(y, p1):.3f} | {r2(y, p1 - p1.mean() + p0.mean()):.3f} | {r2(y, p0 - p0.mean() + line):.3f} / {r2(y, p1 - p1.mean() + line):.3f} "
          f"| {y.mean():.3f} / {p0.mean():.3f} / {p1.mean():.3f} |", flush=True)
