"""Locality-preserving atom order: atoms renumbered cell by cell of a spatial grid, edges re-sorted by dst."""

from __future__ import annotations

import torch
from torch_geometric.data import Data


def grid_cell_ids(data, grid: torch.Tensor) -> torch.Tensor:
    """Each atom's cell (row-major id) in a grid[0]×grid[1]×grid[2] division of the periodic cell,
    in fractional coordinates."""
    frac = data.pos.double() @ torch.linalg.inv(data.cell[0].double())
    ijk = torch.minimum(torch.floor((frac % 1.0) * grid).long(), grid - 1)
    return (ijk[:, 0] * grid[1] + ijk[:, 1]) * grid[2] + ijk[:, 2]


def spatially_ordered(data, cell_size: float = 5.0):
    """(the glass renumbered cell by cell of a ``cell_size``-Å grid, with its edges re-sorted by dst;
    the permutation: new atom j is old atom perm[j]). Neighbours then sit close in memory, so the
    message passing's gathers hit cache: whole 64,000-atom glass 73 → 32 s on one core, same predictions;
    an 8000-atom training step ~5% faster. Every per-atom and per-edge tensor is permuted along."""
    n, e = data.num_nodes, data.edge_index.shape[1]
    grid = torch.clamp((data.cell[0].double().norm(dim=1) / cell_size).floor().long(), min=1)
    perm = torch.argsort(grid_cell_ids(data, grid), stable=True)
    new_id = torch.empty_like(perm)
    new_id[perm] = torch.arange(n)
    edge_index = new_id[data.edge_index]
    order = torch.argsort(edge_index[1] * n + edge_index[0])
    out = Data(edge_index=edge_index[:, order])
    for key, value in data.items():
        if key != "edge_index":
            is_tensor = torch.is_tensor(value) and value.dim() > 0
            out[key] = value[order] if is_tensor and value.shape[0] == e else value[perm] if is_tensor and value.shape[0] == n else value
    return out, perm


# Glasses above this many atoms are predicted in spatial order (below it the renumbering costs more
# than the cache misses it saves).
REORDER_ABOVE = 2048


def ordered_for_prediction(data, above: int = REORDER_ABOVE):
    """``data`` in spatial order when it has more than ``above`` atoms, with ``file_order`` (the
    permutation: atom j is the file's atom file_order[j]) so its predictions can be put back in the
    file's order (:func:`in_file_order`); smaller glasses unchanged. A reader that calls this and drops
    the graph it read holds one graph, not two, while the glass is predicted (~1 GB per million atoms)."""
    if data.num_nodes <= above or getattr(data, "file_order", None) is not None:
        return data
    out, perm = spatially_ordered(data)
    out.file_order = perm
    return out


def to_file_order(x, perm: torch.Tensor):
    """Per-atom values ``x`` (tensor or array) of a glass renumbered by ``perm`` (new atom j is old atom
    perm[j]), in the old order."""
    out = x.clone() if torch.is_tensor(x) else x.copy()
    out[perm if torch.is_tensor(x) else perm.numpy()] = x
    return out


def in_file_order(data, arrays: dict) -> tuple[Data, dict]:
    """(a glass with the file's atom order: species, pos, cell, name and labels; ``arrays`` of per-atom
    values in ``data``'s order, put in the file's) for a glass from :func:`ordered_for_prediction`;
    anything else is returned as it is."""
    perm = getattr(data, "file_order", None)
    if perm is None:
        return data, arrays
    restored = Data(species=to_file_order(data.species, perm), pos=to_file_order(data.pos, perm), cell=data.cell)
    if getattr(data, "name", None) is not None:
        restored.name = data.name
    if getattr(data, "y", None) is not None:
        restored.y = to_file_order(data.y, perm)
    return restored, {k: to_file_order(v, perm) for k, v in arrays.items()}
