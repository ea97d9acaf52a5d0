"""SymGNN training steps (forward, MSE, backward) on train0 for variants of the default config's
network, side by side in one process: the variants take turns in each of six rounds (the first warms
up), medians (docs/notes/benchmarks.md#step-round-3).

    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/step_variants.py heads [THREADS]
    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/step_variants.py k_train [THREADS]
    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/step_variants.py drop_edges [THREADS]  # after `git apply docs/notes/scripts/drop_edges.diff`
    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/step_variants.py width [THREADS]
    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/step_variants.py cutoff [THREADS]
    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/step_variants.py inner [THREADS]
    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/step_variants.py encoders [THREADS]
    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/step_variants.py recompute [THREADS]
    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/step_variants.py pairs [THREADS]
    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/step_variants.py depth [THREADS]
    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/step_variants.py networks [THREADS]
    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/step_variants.py dropout [THREADS]

A variant's ``cutoff`` (Å) is the radius graph's, not an init arg (default 5.0); docs/notes/benchmarks.md#cutoff.
``inner``: some attention layers on the first shell of the 5 Å graph (docs/notes/benchmarks.md#inner).
``recompute``: φ's activations kept instead of recomputed, and the edge features recomputed instead of
kept; module attributes set after construction (docs/notes/benchmarks.md#recompute).
``networks``: the same init args on EGATLength, the edge-length network without the symmetriser
(``net``: the class; docs/notes/new-glasses.md#variant-ensembles).
``depth``: three and two attention layers, the first keeping its 8 heads (docs/notes/benchmarks.md#depth).
"""

import statistics
import sys
import time
from pathlib import Path

import torch
import yaml
from torch_geometric.data import Batch

from mgglass.bench import DEFAULT_DATA
from mgglass.data import glass_to_data, read_glass
from mgglass.data.order import spatially_ordered
from mgglass.models.symgnn import EGATLength, SymGNN
from mgglass.runtime import keep_freed_memory


def by_heads(*heads: list[int]) -> dict:
    """Variants that differ in their attention heads per layer (so also in their number of layers)."""
    return {f"heads {'/'.join(map(str, h))}": {"heads": h} for h in heads}


SETS = {  # init-arg overrides of experiments/symgnn.yaml's network; the first is the reference
    "heads": by_heads([8, 4, 2, 1], [4, 4, 2, 1], [4, 2, 2, 1], [2, 2, 2, 1], [4, 2, 1]),
    "k_train": {"default": {}, "k_train=1": {"k_train": 1}, "heads 4/2/2/1": {"heads": [4, 2, 2, 1]},
                "heads 4/2/2/1, k_train=1": {"heads": [4, 2, 2, 1], "k_train": 1}},
    "drop_edges": {"default": {}, "drop_edges=0.5": {"drop_edges": 0.5}, "drop_edges=0.3": {"drop_edges": 0.3}},
    "width": {"default": {}, "hidden 48": {"hidden": 48}, "hidden 64": {"hidden": 64}, "heads 8/8/8/8": {"heads": [8, 8, 8, 8]}},
    "cutoff": {f"cutoff {c}": {"cutoff": c} for c in (5.0, 3.9, 4.2, 6.0)},
    "inner": {"default": {}, "layer 1 on 3.9 A": {"inner_cutoff": 3.9, "inner_layers": [1]},
              "layers 3-4 on 3.9 A": {"inner_cutoff": 3.9, "inner_layers": [3, 4]},
              "layers 2-4 on 3.9 A": {"inner_cutoff": 3.9, "inner_layers": [2, 3, 4]},
              "layers 1, 3, 4 on 3.9 A": {"inner_cutoff": 3.9, "inner_layers": [1, 3, 4]},
              "layers 1-2 on 3.9 A": {"inner_cutoff": 3.9, "inner_layers": [1, 2]},
              "all layers on 3.9 A": {"inner_cutoff": 3.9, "inner_layers": [1, 2, 3, 4]}, "cutoff 3.9": {"cutoff": 3.9}},
    "encoders": {"default": {}, "no |x| branch": {"edge_lengths": False}, "k_train=1": {"k_train": 1},
                 "k_train=1, no |x| branch": {"k_train": 1, "edge_lengths": False}},
    "depth": by_heads([8, 4, 2, 1], [8, 4, 1], [8, 2, 1], [8, 1], [4, 2, 1]),
    "pairs": {"default (train_pairs)": {}, "independent draws": {"train_pairs": False}},
    "dropout": {"default (dropout 0.25)": {}, "dropout 0 (LateDropout's first epochs)": {"dropout": 0.0}},
    "networks": {"SymGNN (default)": {}, "EGATLength": {"net": "EGATLength"}, "SymGNN, layer 1 on 3.9 A": {"inner_cutoff": 3.9, "inner_layers": [1]}},
    "recompute": {"default": {}, "phi kept (no recompute)": {"recompute": False},
                  "edge features recomputed": {"recompute_edges": True}},
}
SET_AFTER = ("recompute", "recompute_edges")  # module attributes, not SymGNN init args
NOT_INIT = ("cutoff", "net", *SET_AFTER)

variants = SETS[sys.argv[1] if len(sys.argv) > 1 else "heads"]
keep_freed_memory()
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
init = yaml.safe_load(Path("experiments/symgnn.yaml").read_text())["model"]["net"]["init_args"]
species = ("Cu", "Zr")
glass = read_glass(DEFAULT_DATA / "train0.pickle", species=species)


def train_batch(cutoff: float) -> Batch:
    data = glass_to_data(glass, cutoff, species, False)
    data.y_norm = (data.y - data.y.mean()) / data.y.std()
    return Batch.from_data_list([spatially_ordered(data)[0]])


cutoffs = {k: v.get("cutoff", 5.0) for k, v in variants.items()}
batches = {c: train_batch(c) for c in set(cutoffs.values())}
nets = {k: {"EGATLength": EGATLength}.get(v.get("net"), SymGNN)(**{**init, **{a: x for a, x in v.items() if a not in NOT_INIT}})
        for k, v in variants.items()}
for k, v in variants.items():
    for module in nets[k].modules():
        for a in SET_AFTER:
            if a in v and hasattr(module, a):
                setattr(module, a, v[a])
times = {k: [] for k in nets}
for rep in range(6):
    for k, net in nets.items():
        batch = batches[cutoffs[k]]
        net.train()
        net.zero_grad(set_to_none=True)
        torch.manual_seed(rep)
        t = time.perf_counter()
        torch.nn.functional.mse_loss(net(batch), batch.y_norm).backward()
        if rep:
            times[k].append(time.perf_counter() - t)
base = statistics.median(next(iter(times.values())))
for k, ts in times.items():
    m = statistics.median(ts)
    edges = batches[cutoffs[k]].num_edges
    print(f"{k}: median {m:.3f} s ({m / base:.2f}x), parameters {sum(p.numel() for p in nets[k].parameters())}, edges {edges}")
