"""Data augmentation as a model wrapper: a fresh random O(3) transform per glass at every training forward.

The paper trained the non-invariant network this way, so the default inner model is ``symgnn_nosym``.
Eval-mode forwards pass the batch through untouched.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .symgnn import haar_o3


class Augmented(nn.Module):
    """``Augmented(base="symgnn_nosym", **base_kwargs)``; ``base`` is a registry name or class path,
    a ``{"class_path": ..., "init_args": {...}}`` dict, or an ``nn.Module``."""

    def __init__(self, base: str | dict | nn.Module = "symgnn_nosym", **base_kwargs):
        super().__init__()
        if isinstance(base, nn.Module):
            if base_kwargs:
                raise TypeError("keyword arguments are for building `base`, not for an nn.Module")
            self.model = base
            return
        from . import build_model  # late: the registry imports this module by path

        if isinstance(base, dict):
            cfg = dict(base)
            name = cfg.pop("class_path", None) or cfg.pop("name")
            kwargs = {**cfg.pop("init_args", cfg), **base_kwargs}
            self.model = build_model(name, **kwargs)
        else:
            self.model = build_model(base, **base_kwargs)

    @staticmethod
    def transform(batch, generator: torch.Generator | None = None):
        """A shallow copy of ``batch`` with edge_vec, pos and cell rotated/reflected by one Haar O(3) per glass."""
        g = int(batch.num_graphs) if hasattr(batch, "num_graphs") else 1
        vec = batch.edge_vec
        q = haar_o3(g, generator).to(device=vec.device, dtype=vec.dtype)
        node_graph = getattr(batch, "batch", None)
        if node_graph is None:
            node_graph = vec.new_zeros(batch.species.shape[0], dtype=torch.long)
        out = copy.copy(batch)  # new attribute store, same tensors: the caller's batch stays as it was
        out.edge_vec = torch.einsum("ei,eij->ej", vec, q[node_graph[batch.edge_index[0]]])
        if getattr(batch, "pos", None) is not None:
            out.pos = torch.einsum("ni,nij->nj", batch.pos, q.to(batch.pos.dtype)[node_graph])
        if getattr(batch, "cell", None) is not None:
            out.cell = batch.cell @ q.to(batch.cell.dtype)
        return out

    def forward(self, batch, **kwargs) -> Tensor:
        return self.model(self.transform(batch) if self.training else batch, **kwargs)
