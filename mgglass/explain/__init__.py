"""Explanations of per-atom predictions (GNNExplainer) and their topology; see ``python -m mgglass.explain``."""
