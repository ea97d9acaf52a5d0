"""A callback that makes every training epoch last at least a second, so that a test can kill a fit
between its first checkpoint and its end on any machine (a 3-epoch synthetic fit can otherwise end
within the 0.2 s a test takes to notice its first epoch)."""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import Callback


class SlowEpochs(Callback):
    def __init__(self, seconds: float = 1.5):
        self.seconds = seconds

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        time.sleep(self.seconds)
