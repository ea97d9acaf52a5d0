"""Exact periodic radius graphs. The only module that imports torch_cluster (deprecated upstream)."""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
from torch_cluster import radius


class PBCGraph(NamedTuple):
    edge_index: torch.Tensor  # [2, E] long: (src, dst); every pair appears in both directions
    edge_vec: torch.Tensor  # [E, 3] position of the dst image minus position of src, Å
    edge_len: torch.Tensor  # [E]
    shift: torch.Tensor  # [E, 3] integer cell offset of the dst image (same dtype as positions)


def _image_counts(cell: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Images needed along each lattice vector: ceil(cutoff / spacing of the opposite faces)."""
    volume = torch.linalg.det(cell).abs()
    a, b, c = cell
    areas = torch.stack([torch.linalg.cross(b, c).norm(), torch.linalg.cross(c, a).norm(), torch.linalg.cross(a, b).norm()])
    return cutoff / (volume / areas)  # cutoff in units of each face spacing (fractional reach)


def radius_graph_pbc(positions: torch.Tensor, cell: torch.Tensor, cutoff: float, self_loops: bool = False) -> PBCGraph:
    """All pairs (i, j, image) with |x_j + shift·cell − x_i| < cutoff under full periodic boundaries.

    Exact for triclinic cells and for cells smaller than 2×cutoff (each image of a neighbour is its own
    edge), with no neighbour cap. ``self_loops`` adds the zero-length (i, i) edges. Runs on the device
    of ``positions``; ``cell`` rows are the lattice vectors.
    """
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must be [N, 3], got {tuple(positions.shape)}")
    cell = cell.to(positions)
    n = positions.shape[0]
    reach = _image_counts(cell, cutoff)
    counts = torch.ceil(reach).long().tolist()

    # Wrap into the cell in fractional coordinates, then make ghosts of every image whose fractional
    # coordinates lie within `reach` of the unit cube (a superset of the points within cutoff of the cell).
    frac = positions @ torch.linalg.inv(cell)
    frac = frac - torch.floor(frac)
    shifts = torch.tensor(
        list(itertools.product(*(range(-k, k + 1) for k in counts))), dtype=positions.dtype, device=positions.device
    )
    ghost_frac = frac.unsqueeze(0) + shifts.unsqueeze(1)  # [S, N, 3]
    keep = ((ghost_frac >= -reach) & (ghost_frac < 1 + reach)).all(-1)
    shift_id, atom_id = keep.nonzero(as_tuple=True)
    ghost_pos = ghost_frac[shift_id, atom_id] @ cell
    centre_pos = frac @ cell

    pairs = radius(ghost_pos, centre_pos, cutoff, max_num_neighbors=max(ghost_pos.shape[0], 1))
    src, ghost = pairs[0], pairs[1]
    dst = atom_id[ghost]
    shift = shifts[shift_id[ghost]]
    vec = ghost_pos[ghost] - centre_pos[src]
    length = vec.norm(dim=-1)
    keep = length < cutoff
    if not self_loops:
        keep &= (src != dst) | shift.any(-1)
    edge_index = torch.stack([src[keep], dst[keep]])
    return PBCGraph(edge_index, vec[keep], length[keep], shift[keep])
