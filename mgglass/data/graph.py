"""Exact periodic radius graphs. The only module that imports torch_cluster (deprecated upstream)."""

from __future__ import annotations

import itertools
import math
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


def _ghosts(positions: torch.Tensor, cell: torch.Tensor, cutoff: float):
    """Every periodic image whose fractional coordinates lie within the cutoff's reach of the unit
    cell (a superset of the points within cutoff of the cell): (positions, atom index, −shift).
    The atoms themselves come first, wrapped into the cell, so ghost i < N is atom i."""
    reach = _image_counts(cell, cutoff).tolist()
    frac = positions @ torch.linalg.inv(cell)
    frac = frac - torch.floor(frac)
    atom = torch.arange(positions.shape[0], device=positions.device)
    shift = torch.zeros_like(frac)
    # One lattice vector at a time: imaging the images gives the edges and corners. Selecting the
    # few points near each face is ~4× cheaper than testing all 27 (or more) shifts of every atom.
    for axis, r in enumerate(reach):
        parts = [(frac, atom, shift)]
        x = frac[:, axis]
        for m in range(1, math.ceil(r) + 1):
            for sign, keep in ((1, x < 1 + r - m), (-1, x >= m - r)):
                sel = keep.nonzero().squeeze(1)
                f, s = frac.index_select(0, sel), shift.index_select(0, sel)
                f[:, axis] += sign * m
                s[:, axis] += sign * m
                parts.append((f, atom.index_select(0, sel), s))
        frac, atom, shift = (torch.cat(t) for t in zip(*parts))
    return frac @ cell, atom, shift.neg_()


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _edges(ghost_pos, atom, neg_shift, n: int, begin: int, end: int, cutoff: float, self_loops: bool):
    """The edges into atoms begin..end-1 as PBCGraph fields, grouped by dst in order."""
    centre_pos = ghost_pos[:n]
    queries = centre_pos[begin:end]
    if ghost_pos.device.type == "cpu":  # the CPU search has no per-query buffer, so no cap is free
        pairs = radius(ghost_pos, queries, cutoff, max_num_neighbors=ghost_pos.shape[0])
    else:  # on GPU the cap sizes a [queries, cap] buffer: start modest, retry larger when one fills it
        cap = 128
        while True:
            pairs = radius(ghost_pos, queries, cutoff, max_num_neighbors=cap)
            if pairs.shape[1] == 0 or torch.bincount(pairs[0]).max() < cap or cap >= ghost_pos.shape[0]:
                break
            cap *= 4
    if begin:
        pairs[0] += begin
    if not self_loops:
        pairs = pairs[:, pairs[0] != pairs[1]]
    centre, ghost = pairs[0], pairs[1]
    # Each query atom is the dst of its edges (the graph is symmetric, so this is the same edge set),
    # which leaves the edges sorted by dst: aggregation at dst can use segment (CSR) reductions.
    vec = centre_pos.index_select(0, centre) - ghost_pos.index_select(0, ghost)
    edge_index = torch.stack([atom.index_select(0, ghost), centre])
    return edge_index, vec, torch.linalg.vector_norm(vec, dim=-1), neg_shift.index_select(0, ghost)


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
    ghosts = _ghosts(positions, cell, cutoff)
    args = (cutoff, self_loops)
    threads = torch.get_num_threads()
    if positions.device.type != "cpu" or threads < 2 or n < 4096:
        return PBCGraph(*_edges(*ghosts, n, 0, n, *args))
    # torch_cluster's CPU search is single-threaded: split the queries over torch's intra-op thread
    # count (the op releases the GIL), each part also doing its own gathers; same output as one call.
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads)
    bounds = torch.linspace(0, n, threads + 1).long().tolist()
    jobs = [_POOLS[threads].submit(_edges, *ghosts, n, a, b, *args) for a, b in itertools.pairwise(bounds)]
    parts = [job.result() for job in jobs]
    return PBCGraph(torch.cat([p[0] for p in parts], 1), *(torch.cat([p[i] for p in parts]) for i in (1, 2, 3)))
