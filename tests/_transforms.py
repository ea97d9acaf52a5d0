"""Symmetry transforms of a periodic glass batch, for invariance tests.

Rotations/reflections act on every Cartesian field (pos, edge_vec, cell rows); integer cell
offsets (edge_shift) are unchanged. A translation moves pos only: edge vectors are differences.
A permutation reorders atoms within each glass (the Batch layout stays valid), remaps edge_index
and shuffles the edge order too, so models cannot rely on either order.
"""

from __future__ import annotations

import torch

CARTESIAN = ("pos", "edge_vec", "cell")
FLOAT_FIELDS = ("pos", "edge_vec", "cell", "y", "y_norm")


def to_double(batch):
    batch = batch.clone()
    for key in FLOAT_FIELDS:
        if key in batch:
            batch[key] = batch[key].double()
    return batch


def random_rotation(generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """A uniformly random proper rotation (QR of a Gaussian matrix, signs fixed, det = +1)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_reflection(generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """An improper orthogonal matrix (det = -1): a random rotation followed by a mirror."""
    return torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=dtype)) @ random_rotation(
        generator, dtype
    )


def rotate(batch, matrix: torch.Tensor):
    """x -> R x for every Cartesian vector (row vectors: x @ R^T)."""
    batch = batch.clone()
    for key in CARTESIAN:
        batch[key] = batch[key] @ matrix.to(batch[key]).T
    return batch


def translate(batch, shift: torch.Tensor):
    batch = batch.clone()
    batch.pos = batch.pos + shift.to(batch.pos)
    return batch


def permute(batch, generator: torch.Generator):
    """(permuted batch, perm) with new atom k = old atom perm[k]; compare out_new with out_old[perm]."""
    batch = batch.clone()
    n = batch.num_nodes
    perm = torch.empty(n, dtype=torch.long)
    for g in range(
        batch.num_graphs
    ):  # permute within each glass so `batch` stays sorted
        idx = (batch.batch == g).nonzero().squeeze(-1)
        perm[idx] = idx[torch.randperm(idx.numel(), generator=generator)]
    inv = torch.argsort(perm)
    for key in ("species", "pos", "y", "y_norm", "batch"):
        if key in batch:
            batch[key] = batch[key][perm]
    edge_perm = torch.randperm(batch.edge_index.shape[1], generator=generator)
    batch.edge_index = inv[batch.edge_index][:, edge_perm]
    batch.edge_vec = batch.edge_vec[edge_perm]
    batch.edge_shift = batch.edge_shift[edge_perm]
    return batch, perm
