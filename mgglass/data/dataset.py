"""Glass files -> torch_geometric graphs, cached on disk by content, cutoff and species map."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from .download import cache_dir, sha256_file
from .errors import GlassDataError
from .graph import radius_graph_pbc
from .structure import DEFAULT_SPECIES, Glass, read_glass

# Bump when the stored graph layout or edge order changes, so old caches are rebuilt (3: edges
# within each dst come in the two-slab search's order, so cached and fresh graphs sum alike).
GRAPH_FORMAT = 3
_FIELDS = ("species", "pos", "cell", "edge_index", "edge_vec", "edge_shift", "y", "aux")


def auxiliary_targets(glass: Glass, keys, species_index) -> torch.Tensor:
    """[N, len(keys)]: the glass's per-atom arrays ``keys``, each standardised within each species of
    this glass, so an auxiliary target carries neither the species' offset nor the glass's."""
    n = len(glass)
    missing = [k for k in keys if k not in glass.extras]
    if missing:
        has = ", ".join(sorted(glass.extras)) or "none"
        raise GlassDataError(glass.source, f"no per-atom array {missing[0]!r} for the auxiliary targets (has: {has})")
    cols = []
    for k in keys:
        v = np.asarray(glass.extras[k], dtype=np.float64)
        if v.shape != (n,) or not np.all(np.isfinite(v)):
            raise GlassDataError(glass.source, f"per-atom array {k!r} must hold {n} finite values (shape {v.shape})")
        out = np.zeros(n)
        for s in np.unique(species_index):
            m = species_index == s
            out[m] = (v[m] - v[m].mean()) / max(v[m].std(), 1e-12)
        cols.append(out)
    return torch.as_tensor(np.stack(cols, axis=1), dtype=torch.float32)


def glass_to_data(
    glass: Glass, cutoff: float = 5.0, species=DEFAULT_SPECIES, self_loops: bool = False, aux_keys=()
) -> Data:
    """One glass as a graph: species [N], pos [N,3], cell [1,3,3], edge_index [2,E] (src, dst),
    edge_vec [E,3] (dst image − src, Å), edge_shift [E,3] (cell offset of the dst image), y [N] eV,
    and with ``aux_keys`` aux [N, k] (:func:`auxiliary_targets`)."""
    index = glass.species_index(species)
    pos = torch.as_tensor(glass.positions, dtype=torch.float64)
    cell = torch.as_tensor(glass.cell, dtype=torch.float64)
    g = radius_graph_pbc(pos, cell, cutoff, self_loops=self_loops)  # float64: exact at the cutoff
    data = Data(
        species=torch.as_tensor(index),
        pos=pos.float(),
        cell=cell.float().unsqueeze(0),
        edge_index=g.edge_index,
        edge_vec=g.edge_vec.float(),
        edge_shift=g.shift.to(torch.int8),
    )
    if glass.labels is not None:
        data.y = torch.as_tensor(glass.labels, dtype=torch.float32)
    if aux_keys:
        data.aux = auxiliary_targets(glass, aux_keys, index)
    data.name = Path(glass.source).name
    return data


def graph_key(path: str | Path, cutoff: float, species, self_loops: bool, label_key: str | None, aux_keys=()) -> str:
    """Cache key: the file's bytes and everything that changes the graph built from them."""
    spec = [GRAPH_FORMAT, sha256_file(path), float(cutoff), list(species), self_loops, label_key]
    spec = json.dumps(spec + [list(aux_keys)] if aux_keys else spec)  # keys of graphs without aux unchanged
    return hashlib.sha256(spec.encode()).hexdigest()[:32]


def load_graph(
    path: str | Path,
    cutoff: float = 5.0,
    species=DEFAULT_SPECIES,
    self_loops: bool = False,
    label_key: str | None = "eb",
    cache: str | Path | None = None,
    aux_keys=(),
) -> Data:
    """Read and convert one glass file, through the on-disk cache (None: the user cache; False: none)."""
    path = Path(path)
    if not path.is_file():  # fail on the input before hashing it
        read_glass(path)
    cached = None
    if cache is not False:  # the key hashes the whole file: only worth it when there is a cache
        key = graph_key(path, cutoff, species, self_loops, label_key, aux_keys)
        cached = Path(cache or cache_dir() / "graphs") / f"{key}.pt"
    if cached is not None and cached.is_file():
        try:
            stored = torch.load(cached, weights_only=True)  # tensors only: loading runs no code
            data = Data(**{k: stored[k] for k in _FIELDS if k in stored})
            data.name = path.name
            return data
        except Exception:  # noqa: BLE001 - whatever is wrong with a cache entry, rebuild it
            cached.unlink(missing_ok=True)  # a torn or foreign cache file is rebuilt, not trusted
    data = glass_to_data(read_glass(path, label_key=label_key), cutoff, species, self_loops, aux_keys)
    data.name = path.name
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")  # per process; no RNG use (seeding)
        torch.save({k: data[k] for k in _FIELDS if k in data}, tmp)
        tmp.replace(cached)  # atomic, so concurrent DDP ranks never read half a file
    return data


def glass_names(paths: list[Path]) -> list[str]:
    """The name each glass file of ``paths`` goes by in outputs (``mgglass.predict``'s CSV and metrics, a
    level line's glasses, the reference's test glasses, RDF plots, a split's predictions): its file
    name, or where files share one (``run1/final.extxyz``, ``run2/final.extxyz``), the fewest trailing
    folders that tell them apart."""
    parts = [p.resolve().parts for p in paths]
    names = []
    for mine in parts:
        k = 1
        while k < len(mine) and any(other != mine and other[-k:] == mine[-k:] for other in parts):
            k += 1
        names.append("/".join(mine[-k:]))
    return names
