"""Exact periodic radius graphs. The only module that imports torch_cluster (deprecated upstream)."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import torch
from torch_cluster import radius


class PBCGraph(NamedTuple):
    edge_index: torch.Tensor  # [2, E] long: (src, dst), sorted by dst; every pair appears in both directions
    edge_vec: torch.Tensor  # [E, 3] position of the dst image minus position of src, Å
    edge_len: torch.Tensor  # [E]
    shift: torch.Tensor  # [E, 3] integer cell offset of the dst image (same dtype as positions)


def _image_counts(cell: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Images needed along each lattice vector: ceil(cutoff / spacing of the opposite faces)."""
    volume = torch.linalg.det(cell).abs()
    a, b, c = cell
    areas = torch.stack([torch.linalg.cross(b, c).norm(), torch.linalg.cross(c, a).norm(), torch.linalg.cross(a, b).norm()])
    return cutoff / (volume / areas)  # cutoff in units of each face spacing (fractional reach)


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _radius(x: torch.Tensor, y: torch.Tensor, r: float, cap: int) -> torch.Tensor:
    """torch_cluster.radius; on CPU its KD-tree search is single-threaded, so large query sets are
    split across torch's intra-op threads (the op releases the GIL). Same output order as one call."""
    threads = torch.get_num_threads()
    if x.device.type != "cpu" or threads < 2 or y.shape[0] < 4096:
        return radius(x, y, r, max_num_neighbors=cap)
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads)
    pool = _POOLS[threads]
    bounds = torch.linspace(0, y.shape[0], threads + 1).long().tolist()
    jobs = [pool.submit(radius, x, y[a:b], r, None, None, cap) for a, b in itertools.pairwise(bounds)]
    parts = [job.result() for job in jobs]
    for part, a in zip(parts, bounds[:-1]):
        part[0] += a
    return torch.cat(parts, dim=1)


def radius_graph_pbc(positions: torch.Tensor, cell: torch.Tensor, cutoff: float, self_loops: bool = False) -> PBCGraph:
    """All pairs (i, j, image) with |x_j + shift·cell − x_i| < cutoff under full periodic boundaries.

    Exact for triclinic cells and for cells smaller than 2×cutoff (each image of a neighbour is its own
    edge), with no neighbour cap. ``self_loops`` adds the zero-length (i, i) edges. Runs on the device
    of ``positions``; ``cell`` rows are the lattice vectors.
    """
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must be [N, 3], got {tuple(positions.shape)}")
    cell = cell.to(positions)
    reach = _image_counts(cell, cutoff)
    counts = torch.ceil(reach).long().tolist()

    # Wrap into the cell in fractional coordinates, then make ghosts of every image whose fractional
    # coordinates lie within `reach` of the unit cube (a superset of the points within cutoff of the cell).
    frac = positions @ torch.linalg.inv(cell)
    frac = frac - torch.floor(frac)
    grid = itertools.product(*(range(-k, k + 1) for k in counts))
    # The zero shift goes first, so ghost i < N is atom i itself: self-pairs are then just ghost == src.
    shifts = torch.tensor([(0, 0, 0)] + [s for s in grid if any(s)], dtype=positions.dtype, device=positions.device)
    ghost_frac = frac.unsqueeze(0) + shifts.unsqueeze(1)  # [S, N, 3]
    inside = ((ghost_frac >= -reach) & (ghost_frac < 1 + reach)).all(-1)
    inside[0] = True  # wrapped atoms are in the cell; don't let rounding at 1.0 drop one
    shift_id, atom_id = inside.nonzero(as_tuple=True)
    ghost_pos = ghost_frac[shift_id, atom_id] @ cell
    centre_pos = ghost_pos[: positions.shape[0]]

    # Start with a modest neighbour cap and retry with a larger one whenever a query fills it: exact,
    # with no cap, and without torch_cluster sizing every query's buffer for the worst case.
    cap = 128
    while True:
        pairs = _radius(ghost_pos, centre_pos, cutoff, cap)
        if pairs.shape[1] == 0 or torch.bincount(pairs[0]).max() < cap or cap >= ghost_pos.shape[0]:
            break
        cap *= 4
    centre, ghost = pairs[0], pairs[1]
    if not self_loops:
        keep = ghost != centre
        centre, ghost = centre[keep], ghost[keep]
    # Each query atom is the dst of its edges (the graph is symmetric, so this is the same edge set),
    # which leaves the edges sorted by dst: aggregation at dst can use segment (CSR) reductions.
    vec = centre_pos.index_select(0, centre) - ghost_pos.index_select(0, ghost)
    edge_index = torch.stack([atom_id.index_select(0, ghost), centre])
    shift = shifts.index_select(0, shift_id.index_select(0, ghost)).neg_()
    return PBCGraph(edge_index, vec, vec.norm(dim=-1), shift)
