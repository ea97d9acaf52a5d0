"""How much Pearson r could a better level per species give a held-out glass? (docs/notes/new-glasses.md#species-level)
r pools the atoms of both species, so a prediction whose Cu and Zr means sit off by different amounts
ranks the two species against each other wrongly. Each species' predictions are moved onto its label
mean (an oracle: it reads the labels of the held-out glass) and r is computed again.

    python docs/notes/scripts/species_level.py mlruns/checkpoints/cv-tp-groups/train*-s0/test/predictions.csv mlruns/checkpoints/cv-tp/train*-s0/test/predictions.csv

Reads the predictions.csv that mgglass.cv writes for each fold (columns glass, atom, species, eb_ev, eb_pred_ev).
"""

import sys

import pandas as pd

from mgglass.metrics import pooled_metrics

for path in sys.argv[1:]:
    df = pd.read_csv(path)
    shifted = df.eb_pred_ev + df.groupby("species").eb_ev.transform("mean") - df.groupby("species").eb_pred_ev.transform("mean")
    offsets = (df.groupby("species").eb_ev.mean() - df.groupby("species").eb_pred_ev.mean()).round(3).to_dict()
    y = df.eb_ev.to_numpy(copy=True)
    print(f"{df.glass.iloc[0]}: r {pooled_metrics(y, df.eb_pred_ev.to_numpy(copy=True))['r']:.4f}, "
          f"each species at its label mean {pooled_metrics(y, shifted.to_numpy(copy=True))['r']:.4f}; label - predicted mean {offsets} eV")
