# Moved to mgglass.callbacks.calibration; kept so configs that name mgglass.calibration.RecalibrateBatchNorm still load.
from mgglass.callbacks.calibration import RecalibrateBatchNorm  # noqa: F401
