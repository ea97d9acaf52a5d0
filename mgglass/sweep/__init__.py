"""Hyperparameter sweeps: Optuna studies whose trials are ``mgglass.fit`` runs (``python -m mgglass.sweep``)."""
