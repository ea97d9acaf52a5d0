# Moved to mgglass.callbacks.late_dropout; kept because saved run configs name mgglass.regularization.LateDropout.
from mgglass.callbacks.late_dropout import LateDropout  # noqa: F401
