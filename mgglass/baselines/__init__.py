"""References that need no GNN: a per-atom descriptor with gradient-boosted trees (:mod:`mgglass.baselines.soap`)."""
