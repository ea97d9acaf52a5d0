# Moved to mgglass.callbacks.progress; kept so configs that name mgglass.progress.PlainProgress still load.
from mgglass.callbacks.progress import PlainProgress  # noqa: F401
