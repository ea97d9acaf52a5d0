# Moved to mgglass.callbacks.checkpoint; kept so code and configs that name mgglass.checkpoint.ModelCheckpoint still load.
from mgglass.callbacks.checkpoint import ModelCheckpoint  # noqa: F401
