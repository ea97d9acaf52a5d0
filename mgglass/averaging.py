# Moved to mgglass.callbacks.ema; kept because saved run configs (mlruns/**/config.yaml) name mgglass.averaging.EMA.
from mgglass.callbacks.ema import EMA  # noqa: F401
