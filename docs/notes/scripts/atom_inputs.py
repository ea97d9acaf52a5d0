"""Would per-atom energies or stresses help as network inputs? (docs/notes/new-glasses.md, "Per-atom
energy as an input"). Asked of the held-out predictions a cross-validation already made, before any
fit: gradient-boosted trees learn the label from a fold model's prediction plus candidate inputs on
six glasses' held-out predictions (the held-out glass's twin left out too) and predict the seventh.
If the inputs carried what the network misses, the trees' r would rise above the prediction's own.

Inputs, each standardised within species and glass (so they carry no glass level): the released
``pot``, ``press``, ``von``, and the mean ``pot`` of each atom's neighbours within 3.4 Å (first shell)
and 3.4–5 Å, which an input to the message passing would also reach. Beside them, the same trees
on the energies alone (no prediction), and the fold model mixed with the SOAP reference.

    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/atom_inputs.py [CV_NAME]
"""

import os
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import torch

from mgglass.data.graph import radius_graph_pbc
from mgglass.data.structure import read_glass
from mgglass.runtime import keep_freed_memory

keep_freed_memory()
DATA = Path(os.environ.get("MGGLASS_DATA_DIR", "../shared/data/cuzr"))
CV = sys.argv[1] if len(sys.argv) > 1 else "cv-symgnn"
GLASSES = [f"train{k}" for k in range(7)]
TWINS = {"train0": "train1", "train1": "train0", "train5": "train6", "train6": "train5"}
SHELLS = ((0.0, 3.4), (3.4, 5.0))


def standardised(v: np.ndarray, species: np.ndarray) -> np.ndarray:
    out = np.zeros_like(v)
    for s in np.unique(species):
        m = species == s
        out[m] = (v[m] - v[m].mean()) / v[m].std()
    return out


def columns(name: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    df = pd.read_csv(Path("mlruns/checkpoints") / CV / f"{name}-s0" / "test" / "predictions.csv")
    glass = read_glass(DATA / f"{name}.pickle")
    species = glass.species_index(("Cu", "Zr"))
    cols = {"prediction": df.eb_pred_ev.to_numpy(), "species": species.astype(float)}
    cols |= {k: standardised(glass.extras[k], species) for k in ("pot", "press", "von")}
    g = radius_graph_pbc(torch.as_tensor(glass.positions), torch.as_tensor(np.asarray(glass.cell)), 5.0)
    src, dst, length = g.edge_index[0].numpy(), g.edge_index[1].numpy(), g.edge_len.numpy()
    for lo, hi in SHELLS:
        m = (length >= lo) & (length < hi)
        total = np.bincount(dst[m], weights=cols["pot"][src[m]], minlength=len(species))
        cols[f"pot {lo:g}-{hi:g} A"] = total / np.maximum(np.bincount(dst[m], minlength=len(species)), 1)
    return cols, df.eb_ev.to_numpy()


data = {name: columns(name) for name in GLASSES}
SETS = {
    "prediction": ["prediction", "species"],
    "+ pot": ["prediction", "species", "pot"],
    "+ pot, press, von": ["prediction", "species", "pot", "press", "von"],
    "+ pot and its shells": ["prediction", "species", "pot", "pot 0-3.4 A", "pot 3.4-5 A"],
    "pot and its shells alone": ["species", "pot", "pot 0-3.4 A", "pot 3.4-5 A"],
}
print("| inputs | " + " | ".join(GLASSES) + " | mean |")
print("|---" * (len(GLASSES) + 2) + "|")
for label, keys in SETS.items():
    rs = []
    for held in GLASSES:
        rest = [g for g in GLASSES if g not in (held, TWINS.get(held))]
        x = np.vstack([np.column_stack([data[g][0][k] for k in keys]) for g in rest])
        y = np.concatenate([data[g][1] for g in rest])
        trees = lgb.LGBMRegressor(n_estimators=300, learning_rate=0.05, num_leaves=15, min_child_samples=100, n_jobs=1,
                                  verbose=-1, random_state=0).fit(x, y)
        p = trees.predict(np.column_stack([data[held][0][k] for k in keys]))
        rs.append(np.corrcoef(p, data[held][1])[0, 1])
    print(f"| {label} | " + " | ".join(f"{r:.3f}" for r in rs) + f" | {np.mean(rs):.3f} |")

print("\nthe residual's r with pot, and a linear fit of prediction and pot on the held-out glass itself:")
for held in GLASSES:
    (cols, y), p = data[held], data[held][0]["prediction"]
    a = np.column_stack([p, cols["pot"], np.ones_like(p)])
    fit = a @ np.linalg.lstsq(a, y, rcond=None)[0]
    print(f"  {held}: r(residual, pot) {np.corrcoef(y - p, cols['pot'])[0, 1]:+.3f}, r {np.corrcoef(p, y)[0, 1]:.4f} -> {np.corrcoef(fit, y)[0, 1]:.4f}")

ref = Path("mlruns/cv") / CV / "reference"
if ref.is_dir():
    print("\nfold model z-score mixed with the SOAP reference's (weight w on the model):")
    for held in GLASSES[2:]:  # train0/train1's reference memorised the twin
        d = np.load(ref / f"{held}.npz")
        p, s, y = data[held][0]["prediction"], d["p"], d["y"]

        def z(v):
            return (v - v.mean()) / v.std()

        print(f"  {held}: " + ", ".join(f"w {w:.1f}: r {np.corrcoef(w * z(p) + (1 - w) * z(s), y)[0, 1]:.3f}" for w in (1.0, 0.9, 0.8, 0.7)))
