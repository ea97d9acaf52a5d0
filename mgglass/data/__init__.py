"""Data layer: reading glasses, periodic radius graphs, synthetic glasses and the DataModule.

A batch (torch_geometric ``Batch`` of whole glasses) carries: ``species`` [N] long (index into the
species map), ``pos`` [N,3] Å, ``cell`` [G,3,3], ``edge_index`` [2,E] (row 0 src, row 1 dst, sorted by dst; messages
flow src -> dst), ``edge_vec`` [E,3] (dst image − src, Å), ``edge_shift`` [E,3] int8 cell offsets,
``y`` [N] eV and ``y_norm`` [N] (train-split standardised) when labelled, ``batch`` [N] glass index.
"""

from .datamodule import OFFICIAL_SPLIT, GlassDataModule
from .dataset import glass_names, glass_to_data, load_graph
from .errors import GlassDataError
from .graph import PBCGraph, radius_graph_pbc
from .structure import Glass, read_glass
from .synthetic import make_glass, write_synthetic

__all__ = [
    "OFFICIAL_SPLIT",
    "Glass",
    "GlassDataError",
    "GlassDataModule",
    "PBCGraph",
    "glass_names",
    "glass_to_data",
    "load_graph",
    "make_glass",
    "radius_graph_pbc",
    "read_glass",
    "write_synthetic",
]
