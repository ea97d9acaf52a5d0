"""Eval-mode prediction of whole glasses, the library under the task, ``predict``, ``explain`` and
the benchmarks: ``predict_glass`` (one glass, whole, layer by layer over ranges of atoms for SymGNN,
or in chunks of spatial cells, each predicted on its k-hop subgraph; every way equals the whole-glass
prediction), SymGNN's spread over sampled transforms, and pooled predictions over several glasses."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.profiler import record_function
from torch_geometric.data import Batch, Data
from torch_geometric.utils import k_hop_subgraph

from mgglass.data.order import (
    REORDER_ABOVE,
    grid_cell_ids,
    ordered_for_prediction,
    to_file_order,
)
from mgglass.models.egat import STAGES
from mgglass.models.symgnn import SAMPLED

# Glasses above this many atoms are predicted in parts. SymGNN and its EGAT variants go layer by
# layer over ranges of at most DST_RANGE atoms (exact, no halo; ~4 KB per atom held); other models in
# spatial chunks of about CHUNK_ATOMS centre atoms with their k-hop halo (20 Å: ~2.4× the centres at
# 100,000), a chunk's subgraph at ~50 MB per 1000 atoms.
CHUNK_ATOMS = 100_000
DST_RANGE = 16_384


def receptive_hops(net) -> int | None:
    """Message-passing depth: an atom's prediction depends on atoms at most this many edges away."""
    hops = getattr(net, "receptive_hops", None)
    return int(hops() if callable(hops) else hops) if hops is not None else None


def spatial_cells(data, chunk_atoms: int) -> list[torch.Tensor]:
    """Atom indices grouped into an n×n×n grid of the cell (fractional coordinates), n chosen so a
    grid cell holds about ``chunk_atoms`` atoms; empty cells are dropped."""
    n = max(1, math.ceil((data.num_nodes / max(chunk_atoms, 1)) ** (1 / 3)))
    cell_id = grid_cell_ids(data, torch.full((3,), n))
    order = torch.argsort(cell_id, stable=True)
    counts = torch.bincount(cell_id, minlength=n**3)
    return [c for c in torch.split(order, counts.tolist()) if c.numel()]


def _subgraph(data, centres: torch.Tensor, hops: int):
    """The k-hop in-neighbourhood of ``centres`` as a graph, and where the centres sit in it."""
    subset, edge_index, mapping, edge_mask = k_hop_subgraph(
        centres, hops, data.edge_index, relabel_nodes=True, num_nodes=data.num_nodes, flow="source_to_target"
    )
    sub = Data(species=data.species[subset], pos=data.pos[subset], cell=data.cell, edge_index=edge_index, edge_vec=data.edge_vec[edge_mask])
    return sub, mapping


@torch.no_grad()
def predict_glass(task, data, chunk_atoms: int | None = None, reorder_above: int = REORDER_ABOVE) -> np.ndarray:
    """Per-atom eV predictions of ``task`` (eval mode) on one glass graph. Glasses larger than
    ``chunk_atoms`` (None or 0: never) go in parts: SymGNN-family nets layer by layer over ranges of
    min(``chunk_atoms``, ``DST_RANGE``) atoms (``predict_by_dst``, also for any glass above that range),
    others in chunks of about ``chunk_atoms`` centre atoms with their k-hop halo. Glasses of more than
    ``reorder_above`` atoms are predicted in spatial order (:func:`~mgglass.data.order.ordered_for_prediction`,
    which leaves a glass that already comes in it as it is); the predictions are in ``data``'s atom order."""
    if isinstance(data, Batch):
        return _predict_as_numbered(task, data, chunk_atoms)
    with record_function(STAGES["order"]):
        ordered = ordered_for_prediction(data, reorder_above)
    pred = _predict_as_numbered(task, ordered, chunk_atoms)
    return pred if ordered is data else to_file_order(pred, ordered.file_order)


def _predict_as_numbered(task, data, chunk_atoms: int | None) -> np.ndarray:
    was_training = task.training
    task.eval()
    try:
        hops = receptive_hops(task.net)  # None: the model does not say, so it is predicted whole
        by_dst = getattr(task.net, "predict_by_dst", None)
        dst_range = min(chunk_atoms or 0, DST_RANGE)
        if by_dst is not None and dst_range and data.num_nodes > dst_range and not isinstance(data, Batch):
            # the glass itself, not a Batch of it: Batch.from_data_list copies every edge tensor
            return task.to_ev(by_dst(data.to(task.device), dst_range)).cpu().double().numpy()
        if not chunk_atoms or data.num_nodes <= chunk_atoms or hops is None:
            whole = data if isinstance(data, Batch) else Batch.from_data_list([data])
            return task.predict_ev(whole.to(task.device)).cpu().double().numpy()
        out = np.empty(data.num_nodes)
        for centres in spatial_cells(data, chunk_atoms):
            sub, mapping = _subgraph(data, centres, hops)
            pred = task.predict_ev(Batch.from_data_list([sub]).to(task.device))
            out[centres.numpy()] = pred[mapping.to(pred.device)].cpu().double().numpy()
        return out
    finally:
        task.train(was_training)


def sampling_encoder(task):
    """SymGNN's edge encoder when its distribution draws transforms at random; else ValueError."""
    enc = getattr(task.net, "edge_encoder", None)
    if getattr(enc, "distribution", None) not in SAMPLED:
        raise ValueError(f"--samples needs a SymGNN whose distribution samples transforms ({', '.join(SAMPLED)})")
    return enc


@torch.no_grad()
def transform_spread(task, data, samples: int, chunk_atoms: int | None = None) -> np.ndarray:
    """Per-atom std (eV) of the prediction over ``samples`` passes, each encoding the edges with one
    transform drawn from SymGNN's distribution (seeds 1..K; the usual prediction uses seed 0)."""
    enc = sampling_encoder(task)
    saved = enc.k_eval, enc.eval_seed
    try:
        enc.k_eval = 1
        preds = []
        for s in range(1, samples + 1):
            enc.eval_seed = saved[1] + s
            preds.append(predict_glass(task, data, chunk_atoms))
    finally:
        enc.k_eval, enc.eval_seed = saved
    return np.std(np.stack(preds), axis=0)


def predict_pooled(task, graphs) -> tuple[np.ndarray, np.ndarray]:
    """(labels, eV predictions) over whole labelled glasses, pooled."""
    ps = [predict_glass(task, g) for g in graphs]
    return np.concatenate([g.y.double().numpy() for g in graphs]), np.concatenate(ps)
