"""ModelCheckpoint whose ``last.ckpt`` is always the last finished epoch.

Lightning 2.6 writes ``last.ckpt`` (``save_last=True``) only when a top-k checkpoint is saved in the
same step, so after a kill ``--ckpt_path last`` resumed from the best epoch, possibly many epochs
back, and a finished fit left ``last.ckpt`` at its best epoch. Here every epoch that ends also
refreshes ``last.ckpt``.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint

from mgglass.compat import save_last_checkpoint, saves_on_train_epoch_end


class ModelCheckpoint(_LightningModelCheckpoint):
    """``lightning.pytorch.callbacks.ModelCheckpoint`` plus a ``last.ckpt`` after every epoch."""

    def _save_last_every_epoch(self, trainer) -> None:
        # Lightning's own hook ran first; it records the step it saved at, so a top-k save that already
        # wrote last.ckpt this step makes this a no-op.
        if self.save_last:
            save_last_checkpoint(self, trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if saves_on_train_epoch_end(self, trainer):
            self._save_last_every_epoch(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not saves_on_train_epoch_end(self, trainer):
            self._save_last_every_epoch(trainer)
