"""Leave-one-glass-out cross-validation (``python -m mgglass.cv``): folds, runs and their summary."""
