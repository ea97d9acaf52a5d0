"""Exponential moving average of the weights, evaluated the way mgglass evaluates (``trainer.callbacks``).

Lightning's ``EMAWeightAveraging`` swaps the averaged weights in for each validation and saves them
as the checkpoint's ``state_dict`` (the raw weights go to ``current_model_state``). Two things are
adjusted here:

* Lightning restores ``current_model_state`` whenever a checkpoint is loaded while the averaged
  model exists, so ``trainer.test(ckpt_path="best")`` right after a fit tested the *raw* weights of
  the best epoch, not the averaged ones that validation had selected. Here only a resumed fit
  restores them; evaluation keeps the checkpoint's averaged ``state_dict``.
* Buffers are not averaged by default (``use_buffers=False``): batch-norm statistics are recomputed
  for the averaged weights before every validation (:mod:`mgglass.callbacks.calibration`, which runs after the
  swap because ``trainer.callbacks`` come before mgglass's own callbacks), and those are what the
  checkpoint carries.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class EMA(EMAWeightAveraging):
    """``lightning.pytorch.callbacks.EMAWeightAveraging`` (``decay`` per optimizer step) whose averaged
    weights are the ones validation, checkpoints, test and prediction use."""

    def __init__(self, decay: float = 0.98, use_buffers: bool = False, update_starting_at_step: int | None = None):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), not {decay}")
        super().__init__(decay=decay, use_buffers=use_buffers, update_starting_at_step=update_starting_at_step)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
