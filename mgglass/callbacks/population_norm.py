"""Batch norm with the training glasses' statistics during training, so a glass's level is visible.

With one glass per step, train-mode batch norm normalises every feature by *that glass's* mean and
variance: whatever sets a glass apart as a whole (how relaxed it is) is subtracted before the
decoder sees it, so training cannot learn a glass's mean barrier, which spans 1.29-1.83 eV over the
released glasses. A held-out glass's predicted mean then sits near the training glasses' mean (the
default fold that holds train0 out predicted 1.666 eV for a label mean of 1.822; R² 0.31, 0.57 with
the mean corrected). :class:`PopulationBatchNorm` normalises with statistics of the training
glasses taken together instead, as evaluation does: from ``start_epoch`` on, each training epoch
first recomputes every batch norm's statistics over the training glasses with the current weights
(:func:`mgglass.calibration.recalibrate`) and then trains with the batch norms in evaluation mode
(their affine weights still learn). The first epochs keep per-glass statistics, which steady the
start.
"""

from __future__ import annotations

import lightning as L

from mgglass.calibration import batch_norms, recalibrate


class PopulationBatchNorm(L.Callback):
    """From ``start_epoch``, train with batch norms normalising by the training glasses' statistics.

    Args:
        start_epoch: first epoch (0-based) that trains with population statistics.
        max_glasses: training glasses per rank the statistics are taken over (None: all).
    """

    def __init__(self, start_epoch: int = 15, max_glasses: int | None = 2):
        if start_epoch < 0:
            raise ValueError(f"start_epoch must be >= 0, not {start_epoch}")
        self.start_epoch, self.max_glasses = start_epoch, max_glasses

    def _on(self, trainer: L.Trainer) -> bool:
        return trainer.current_epoch >= self.start_epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._on(trainer):
            return
        dm = trainer.datamodule
        graphs = getattr(dm, "graphs", {}).get("train") if dm is not None else None
        if graphs:
            sampler = getattr(trainer.train_dataloader, "sampler", None)
            idx = sorted(set(iter(sampler))) if sampler is not None else range(len(graphs))

            def reduce(t):
                return trainer.strategy.reduce(t, reduce_op="mean") if trainer.world_size > 1 else t

            recalibrate(pl_module.net, [graphs[i] for i in idx], pl_module.device, self.max_glasses, reduce)
        self._freeze(pl_module)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if self._on(trainer):
            self._freeze(pl_module)  # whatever put the module back in training mode since

    @staticmethod
    def _freeze(pl_module: L.LightningModule) -> None:
        for m in batch_norms(pl_module.net):
            m.eval()
