"""Non-invariant GCN baseline whose messages see the raw 3-D edge vector (Cartesian components)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_scatter import scatter

from .egat import mlp_block


class GCNEdgeLayer(nn.Module):
    """h'_d = ReLU(BN(W_0 h_d + Σ_s c_sd W [h_s ‖ x_sd])) + h_d with c_sd = 1/sqrt(deg_s deg_d).

    W [h_s ‖ x_sd] is split as W_h h_s + W_x x_sd so the node part is computed once per atom.
    """

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.lin_self = nn.Linear(hidden, hidden)
        self.lin_src = nn.Linear(hidden, hidden, bias=False)
        self.lin_vec = nn.Linear(3, hidden, bias=False)
        self.norm = nn.BatchNorm1d(hidden)

    def forward(self, h: Tensor, vec: Tensor, edge_index: Tensor, coef: Tensor, edge_mask: Tensor | None = None):
        src, dst = edge_index
        msg = self.lin_vec(vec)
        msg += self.lin_src(h).index_select(0, src)
        w = coef if edge_mask is None else coef * edge_mask
        agg = scatter(msg * w.unsqueeze(-1), dst, dim=0, dim_size=h.shape[0], reduce="sum")
        return torch.relu(self.norm(self.lin_self(h) + agg)) + h


class GCNEdge(nn.Module):
    """Species embedding, ``layers`` GCNEdge layers, per-atom (Linear, BN, ReLU) head -> [N]."""

    def __init__(self, num_species: int = 2, hidden: int = 32, layers: int = 3):
        super().__init__()
        self.embedding = nn.Embedding(num_species, hidden)
        self.layers = nn.ModuleList(GCNEdgeLayer(hidden) for _ in range(layers))
        self.decoder = nn.Sequential(mlp_block([hidden, hidden]), nn.Linear(hidden, 1))

    def forward(self, batch, edge_mask: Tensor | None = None) -> Tensor:
        if edge_mask is None:
            edge_mask = getattr(batch, "edge_mask", None)
        src, dst = batch.edge_index
        n = batch.species.shape[0]
        ones = batch.edge_vec.new_ones(src.shape[0])
        deg = scatter(ones, dst, dim=0, dim_size=n).clamp_min(1)
        deg_out = scatter(ones, src, dim=0, dim_size=n).clamp_min(1)
        coef = (deg_out[src] * deg[dst]).rsqrt()
        h = self.embedding(batch.species)
        for layer in self.layers:
            h = layer(h, batch.edge_vec, batch.edge_index, coef, edge_mask)
        return self.decoder(h).squeeze(-1)
