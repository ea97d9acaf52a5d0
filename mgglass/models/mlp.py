"""Structure-blind baseline: a per-atom MLP on the species alone (the floor any GNN must beat)."""

from __future__ import annotations

from torch import Tensor, nn

from .egat import mlp_block


class SpeciesMLP(nn.Module):
    """Species embedding -> (Linear, BatchNorm, ReLU)×layers -> Linear(hidden, 1); ``forward(batch) -> [N]``."""

    def __init__(self, num_species: int = 2, hidden: int = 32, layers: int = 2):
        super().__init__()
        self.embedding = nn.Embedding(num_species, hidden)
        self.mlp = mlp_block([hidden] * (layers + 1))
        self.out = nn.Linear(hidden, 1)

    def forward(self, batch) -> Tensor:
        return self.out(self.mlp(self.embedding(batch.species))).squeeze(-1)
