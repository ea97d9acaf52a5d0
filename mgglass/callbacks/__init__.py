"""The Lightning callbacks of mgglass, one per module.

Configs name them by class path under ``trainer.callbacks`` (``mgglass.callbacks.EMA``,
``mgglass.callbacks.LateDropout``); the fit adds the others itself (``checkpoint``,
``recalibrate_bn`` sections, the progress lines, the MLflow tracker).
"""

from mgglass.callbacks.after_checkpoint import AfterCheckpoint
from mgglass.callbacks.calibration import RecalibrateBatchNorm
from mgglass.callbacks.checkpoint import ModelCheckpoint
from mgglass.callbacks.ema import EMA
from mgglass.callbacks.late_dropout import LateDropout
from mgglass.callbacks.progress import PlainProgress

__all__ = ["EMA", "AfterCheckpoint", "LateDropout", "ModelCheckpoint", "PlainProgress", "RecalibrateBatchNorm"]
