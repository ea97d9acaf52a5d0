"""GNNExplainer edge masks for single atoms, with ``torch_geometric.explain``.

Each selected atom is explained on its k-hop periodic in-neighbourhood (k = the model's
message-passing depth): exactly the edges whose messages can reach it, so its prediction there
equals its prediction in the whole glass, and an explanation never touches the rest of the glass.

``torch_geometric.explain`` masks messages through ``MessagePassing`` layers (``set_masks``). PyG-built
models (SchNet's CFConv) take the mask there directly; mgglass's own attention layers take an
``edge_mask`` argument, which :class:`ExplainableNet` fills from a mask slot that ``set_masks`` sets
like any other layer. The explainer optimises a mask against the model's own prediction in the
model's normalised output units (``explanation_type='model'``, regression, node level).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import MessagePassing

from mgglass.compat import explain_edge_mask


@dataclass
class ExplainerSettings:
    """GNNExplainer's optimisation (paper: 500 epochs, lr 0.01; coefficients are PyG's defaults).

    Args:
        epochs: optimisation steps per explained atom.
        lr: Adam learning rate of the mask.
        edge_size: weight of the mask-size penalty.
        edge_reduction: ``sum`` or ``mean`` of the mask in that penalty.
        edge_ent: weight of the mask-entropy penalty (pushes the mask towards 0 or 1).
    """

    epochs: int = 500
    lr: float = 0.01
    edge_size: float = 0.005
    edge_reduction: str = "sum"
    edge_ent: float = 1.0


class _MaskSlot(MessagePassing):
    """Receives ``torch_geometric.explain``'s edge mask (``set_masks``) for nets that take ``edge_mask``."""

    def forward(self):  # never called: only its mask attributes are read
        raise NotImplementedError


class ExplainableNet(nn.Module):
    """``forward(x, edge_index, batch) -> [N]``: the net's normalised prediction, edges masked as the
    explainer asks. ``x`` only gives the explainer the node count; the graph comes from ``batch``.

    For nets that split into mask-independent encoders and message passing (SymGNN and its
    variants: ``node_encoder``, ``encode_edges``, ``features_from``, ``head``), the encodings are computed once per
    neighbourhood and reused across the explainer's epochs (SymGNN's 16 evaluation transforms would
    otherwise be recomputed every epoch). The net's parameters are frozen."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.requires_grad_(False)  # only the mask needs gradients (~15% faster backward)
        self.slot = _MaskSlot()
        self.takes_mask = "edge_mask" in inspect.signature(net.forward).parameters
        self.splits = all(hasattr(net, a) for a in ("node_encoder", "encode_edges", "features_from", "head"))
        self._cached: tuple[int, Tensor, Tensor] | None = None

    def _mask(self) -> Tensor | None:
        return explain_edge_mask(self.slot)

    def forward(self, x: Tensor, edge_index: Tensor, batch) -> Tensor:
        mask = self._mask() if self.takes_mask else None
        if not self.splits:
            return self.net(batch, edge_mask=mask) if self.takes_mask else self.net(batch)
        if self._cached is None or self._cached[0] != id(batch):
            with torch.no_grad():
                self._cached = (id(batch), self.net.node_encoder(batch.species), self.net.encode_edges(batch))
        _, h, e = self._cached
        return self.net.head(self.net.features_from(h, e, batch, mask))


def neighbourhood(data: Data, atom: int, hops: int) -> tuple[Data, int]:
    """The ``hops``-hop in-neighbourhood of ``atom``: every edge whose message can reach it within
    ``hops`` layers (``edge_id``: the edge's index in ``data``; ``node_id``: atom indices in ``data``),
    and ``atom``'s index in it."""
    from torch_geometric.utils import k_hop_subgraph

    subset, edge_index, mapping, edge_mask = k_hop_subgraph(
        atom, hops, data.edge_index, relabel_nodes=True, num_nodes=data.num_nodes, directed=True, flow="source_to_target"
    )
    edge_id = edge_mask.nonzero().view(-1)
    sub = Data(species=data.species[subset], pos=data.pos[subset], cell=data.cell, edge_index=edge_index,
               edge_vec=data.edge_vec[edge_id], edge_shift=data.edge_shift[edge_id], edge_id=edge_id, node_id=subset)
    return sub, int(mapping[0])


def explain_atom(model: ExplainableNet, sub: Data, centre: int, settings: ExplainerSettings, seed: int = 0) -> tuple[np.ndarray, float]:
    """(edge importances in [0, 1] for ``sub``'s edges, 0 for edges the explainer found unused; the
    model's unmasked prediction at ``centre``, normalised units, as the explainer computed it)."""
    from torch_geometric.explain import Explainer, GNNExplainer

    explainer = Explainer(
        model=model,
        algorithm=GNNExplainer(epochs=settings.epochs, lr=settings.lr, edge_size=settings.edge_size,
                               edge_reduction=settings.edge_reduction, edge_ent=settings.edge_ent),
        explanation_type="model",
        edge_mask_type="object",
        node_mask_type=None,
        model_config={"mode": "regression", "task_level": "node", "return_type": "raw"},
    )
    batch = Batch.from_data_list([sub])
    torch.manual_seed(seed)  # GNNExplainer draws its initial mask at random
    x = sub.species.view(-1, 1).float()
    try:
        explanation = explainer(x, sub.edge_index, index=centre, batch=batch)
    except ValueError as e:
        if "Could not compute gradients for edges" in str(e):
            raise ExplainError(f"{type(model.net).__name__} does not pass messages through edge masks, so it cannot be explained") from None
        raise
    finally:
        model._cached = None
    return explanation.edge_mask.detach().double().numpy(), float(explanation.prediction[centre])


class ExplainError(Exception):
    """A bad input or option, reported as one line."""
