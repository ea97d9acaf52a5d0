"""The base of callbacks that report an epoch once it is checkpointed (tracker, progress lines,
sweep reporter, accuracy curve)."""

from __future__ import annotations

from lightning.pytorch.callbacks import Checkpoint


class AfterCheckpoint(Checkpoint):
    """Base of callbacks that report an epoch once it is checkpointed. Lightning calls the
    ``on_train_epoch_end`` of Checkpoint (and EarlyStopping) callbacks after the LightningModule's
    own hook and in list order, so a subclass placed after the ModelCheckpoint sees the epoch's
    metrics and its saved checkpoint (``checkpoint.save_on_train_epoch_end`` is on). Saves nothing."""
