"""Training-time regularisation schedules, as Lightning callbacks (configs put them in ``trainer.callbacks``).

:class:`LateDropout`: dropout off for the first epochs, then at the model's own rate ("late dropout",
Liu et al., ICML 2023, "Dropout reduces underfitting"). With the paper's dropout 0.25 SymGNN predicts the
mean for ~30 epochs before it starts to learn; without dropout it starts after ~8 but overfits
(docs/notes/recipe.md, the 130-epoch round). Late dropout is meant to keep the early start and the
regularisation.
"""

from __future__ import annotations

import lightning as L
from torch import nn

from mgglass.models.dropout import DROPOUTS


class LateDropout(L.Callback):
    """Sets every dropout module's rate to 0 before ``start_epoch`` and to its configured rate from then on.

    The configured rates are read from the model when the fit starts, so the schedule is a function of
    the epoch alone: a resumed fit gets the rate its epoch calls for.

    Args:
        start_epoch: first epoch (0-based) trained with dropout.
    """

    def __init__(self, start_epoch: int = 15):
        if start_epoch < 0:
            raise ValueError(f"start_epoch must be >= 0, not {start_epoch}")
        self.start_epoch = start_epoch
        self._rates: dict[nn.Module, float] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and not self._rates:
            self._rates = {m: m.p for m in pl_module.modules() if isinstance(m, DROPOUTS)}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        on = trainer.current_epoch >= self.start_epoch
        for m, p in self._rates.items():
            m.p = p if on else 0.0
