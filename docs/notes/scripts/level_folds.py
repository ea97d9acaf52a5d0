"""The level line through the command users run (docs/notes/new-glasses.md#level): each fold model of
the grouped leave-one-glass-out (twins held out together) predicts its held-out glasses with
`python -m mgglass.predict --level KEY`, the line fitted over the glasses the fold saw; R² of the
network's own predictions (`eb_pred_network`) and of the moved ones, with the glasses' means.

    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/level_folds.py pot   # or eam (md extra)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

KEY = sys.argv[1] if len(sys.argv) > 1 else "pot"
DATA = Path(os.environ.get("MGGLASS_DATA_DIR", "../shared/data/cuzr"))
OUT = Path(os.environ.get("OUT", "/tmp/level_folds"))
FOLDS = {  # fold run -> the glasses it held out
    "cv-symgnn-groups/train0-s0": ["train0", "train1"],
    "cv-symgnn/train2-s0": ["train2"],
    "cv-symgnn/train3-s0": ["train3"],
    "cv-symgnn/train4-s0": ["train4"],
    "cv-symgnn-groups/train5-s0": ["train5", "train6"],
}


def r2(y, p):
    return 1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum()


print(f"| held out | R² network | R² with `--level {KEY}` | label mean | network mean | line mean |")
print("|---|---|---|---|---|---|")
for run, held in FOLDS.items():
    ckpt = next(Path("mlruns/checkpoints", run).glob("best-epoch=*.ckpt"))
    out = OUT / f"{run.replace('/', '_')}-{KEY}.extxyz"
    cmd = [sys.executable, "-m", "mgglass.predict", "--ckpt_path", str(ckpt), "--input", *(str(DATA / f"{g}.pickle") for g in held),
           "--output", str(out), "--level", KEY]
    summary = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    for name, g in pd.read_csv(out.with_suffix(".csv")).groupby("glass", sort=False):
        y, net = g.eb_ev.values, g.eb_pred_network_ev.values
        line = summary["level"]["per_glass"][name]["line_mean_ev"]
        print(f"| {name.split('.')[0]} | {r2(y, net):.3f} | {summary['per_glass'][name]['r2']:.3f} | {y.mean():.3f} | {net.mean():.3f} | {line:.3f} |")
