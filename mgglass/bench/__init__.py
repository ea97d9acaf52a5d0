"""Benchmarks (not tests): ``python -m mgglass.bench {graph,models,fit}``."""
