"""Could a glass's mean per-atom potential energy set its predicted level better than the network?
(docs/notes/new-glasses.md, "The level of a glass"). For each held-out glass of the grouped
leave-one-glass-out (the twins held out together), a line mean EB = a + b * mean pot is fitted on the
glasses its fold model saw (training and validation), and the fold model's predictions are shifted so
that their mean is the line's value; R^2 before and after (r does not change: a shift).

    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/level_line.py

Reads the fold predictions of mlruns/checkpoints/cv-symgnn-groups (train0, train5), cv-symgnn
(train2-4) and the twins scored by the grouped fold models (mlruns/cv/cv-symgnn-groups/twins/, written
by `mgglass.test --ckpt_path <fold's best> --data.test=[train1.pickle] --out ...`).
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd

from mgglass.data.structure import read_glass

DATA = Path(os.environ.get("MGGLASS_DATA_DIR", "../shared/data/cuzr"))
RUNS = Path("mlruns")
FILES = {
    "train0": RUNS / "checkpoints/cv-symgnn-groups/train0-s0/test/predictions.csv",
    "train1": RUNS / "cv/cv-symgnn-groups/twins/grp-train1/predictions.csv",
    "train2": RUNS / "checkpoints/cv-symgnn/train2-s0/test/predictions.csv",
    "train3": RUNS / "checkpoints/cv-symgnn/train3-s0/test/predictions.csv",
    "train4": RUNS / "checkpoints/cv-symgnn/train4-s0/test/predictions.csv",
    "train5": RUNS / "checkpoints/cv-symgnn-groups/train5-s0/test/predictions.csv",
    "train6": RUNS / "cv/cv-symgnn-groups/twins/grp-train6/predictions.csv",
}
GROUP = {"train0": {"train0", "train1"}, "train1": {"train0", "train1"}, "train5": {"train5", "train6"}, "train6": {"train5", "train6"}}


def r2(y, p):
    return 1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum()


glasses = {name: read_glass(DATA / f"{name}.pickle") for name in FILES}
pot = {n: g.extras["pot"].mean() for n, g in glasses.items()}
level = {n: g.labels.mean() for n, g in glasses.items()}
print("| held out | label mean | network's mean | line's mean | R² network | R² shifted to the line |")
print("|---|---|---|---|---|---|")
for name, path in FILES.items():
    d = pd.read_csv(path)
    y, p = d.eb_ev.values, d.eb_pred_ev.values
    seen = [n for n in pot if n not in GROUP.get(name, {name})]
    b, a = np.polyfit([pot[n] for n in seen], [level[n] for n in seen], 1)
    line = a + b * pot[name]
    print(f"| {name} | {y.mean():.3f} | {p.mean():.3f} | {line:.3f} | {r2(y, p):.3f} | {r2(y, p - p.mean() + line):.3f} |")
