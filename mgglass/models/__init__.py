"""Model registry. Every model is a plain ``nn.Module`` with one call signature:

    model(batch) -> Tensor[num_atoms]   # prediction of the normalised label (batch.y_norm)

where ``batch`` is a torch_geometric Batch from :class:`mgglass.data.GlassDataModule` (fields listed in
:mod:`mgglass.data`). Configs select a model by class path (``mgglass.models.symgnn.SymGNN``) or by
the short names below.
"""

from __future__ import annotations

import importlib

# short name -> (class path, family, invariance to rotations/reflections of the input)
REGISTRY: dict[str, tuple[str, str, str]] = {
    "symgnn": ("mgglass.models.symgnn.SymGNN", "SymGNN", "O(3) in expectation"),
    "symgnn_fixed": ("mgglass.models.symgnn.SymGNNFixed", "SymGNN", "none (released code)"),
    "symgnn_nosym": ("mgglass.models.symgnn.SymGNNNoSym", "SymGNN ablation", "none"),
    "egat_len": ("mgglass.models.symgnn.EGATLength", "EGAT", "O(3)"),
    "mlp": ("mgglass.models.mlp.SpeciesMLP", "MLP", "n/a (no structure)"),
    "gcn_edge": ("mgglass.models.gcn.GCNEdge", "GCN", "none"),
    "augment": ("mgglass.models.augment.Augmented", "wrapper", "none (learned)"),
    "egnn": ("mgglass.models.egnn.EGNN", "EGNN", "E(3)"),
    "schnet": ("mgglass.models.schnet.SchNetAtom", "SchNet", "E(3)"),
    "mgcn": ("mgglass.models.mgcn.MGCN", "MGCN", "E(3)"),
    "faenet": ("mgglass.models.faenet.FAENet", "FAENet", "O(3): canonical per-atom PCA frames + frame averaging (proper frames: SO(3))"),
    "dimenet_pp": ("mgglass.models.dimenet.DimeNetPP", "DimeNet++", "E(3)"),
}


def model_class(name: str) -> type:
    """The class for a short name or a dotted class path; a clear error for anything else."""
    path = REGISTRY[name][0] if name in REGISTRY else name
    module, _, cls = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"unknown model {name!r} (known: {', '.join(REGISTRY)})") from None


def build_model(name: str, **kwargs):
    return model_class(name)(**kwargs)
