"""How far can a per-atom uncertainty rank a model's errors on the released glasses?
(docs/notes/new-glasses.md, "Uncertainty"). Two measurements, SOAP features (mgglass.baselines.soap)
with LightGBM, one thread:

1. The label's own noise: train0 and train1 are one structure labelled by two ARTn runs. Trees
   learn |y0 - y1| on one half of the box (x < L/2) and predict the other half (and back): Spearman
   of the predicted with the actual |y0 - y1|; beside it, the same trees' r for the mean label.
2. A fold model's errors: trees learn |error| of a cross-validation's held-out predictions from SOAP
   and the prediction itself, on the other glasses (the held-out glass's twin left out too), and
   predict the held-out glass's |error|.

    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/uncertainty_ceiling.py [CV_NAME]
"""

import os
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from mgglass.baselines.soap import cached_features
from mgglass.data.structure import read_glass
from mgglass.runtime import keep_freed_memory

keep_freed_memory()
DATA = Path(os.environ.get("MGGLASS_DATA_DIR", "../shared/data/cuzr"))
CV = sys.argv[1] if len(sys.argv) > 1 else "cv-symgnn"
TWINS = {"train0": "train1", "train1": "train0", "train5": "train6", "train6": "train5"}


def trees(x, y):
    return lgb.LGBMRegressor(n_estimators=400, learning_rate=0.03, num_leaves=31, min_child_samples=50, colsample_bytree=0.3,
                             subsample=0.8, subsample_freq=1, n_jobs=1, verbose=-1, random_state=0).fit(x, y)


x0, y0 = cached_features(DATA / "train0.pickle")
y1 = read_glass(DATA / "train1.pickle").labels
g = read_glass(DATA / "train0.pickle")
noise = np.abs(y0 - y1)
print(f"train0 vs train1: r {np.corrcoef(y0, y1)[0, 1]:.3f}, rms difference per labelling {np.sqrt(np.mean((y0 - y1) ** 2) / 2):.3f} eV, "
      f"label std {y0.std():.3f} eV")
half = (g.positions[:, 0] % np.diag(np.asarray(g.cell))[0]) < np.diag(np.asarray(g.cell))[0] / 2
for a, b in ((half, ~half), (~half, half)):
    rho = spearmanr(trees(x0[a], noise[a]).predict(x0[b]), noise[b]).statistic
    r = np.corrcoef(trees(x0[a], ((y0 + y1) / 2)[a]).predict(x0[b]), ((y0 + y1) / 2)[b])[0, 1]
    print(f"  label noise from SOAP: Spearman {rho:.3f} (the same trees on the mean label: r {r:.3f})")

feats, err = {}, {}
for name in [f"train{k}" for k in range(7)]:
    f = Path("mlruns/checkpoints") / CV / f"{name}-s0" / "test" / "predictions.csv"
    if f.is_file():
        df = pd.read_csv(f)
        feats[name] = np.column_stack([cached_features(DATA / f"{name}.pickle")[0], df.eb_pred_ev.values])
        err[name] = np.abs(df.eb_ev.values - df.eb_pred_ev.values)
for name, x in feats.items():
    rest = [m for m in feats if m not in (name, TWINS.get(name))]
    model = trees(np.vstack([feats[m] for m in rest]), np.concatenate([err[m] for m in rest]))
    print(f"{CV} {name}: |error| from SOAP and the prediction, Spearman {spearmanr(model.predict(x), err[name]).statistic:.3f}")
