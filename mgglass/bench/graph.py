"""Time radius_graph_pbc against ase's neighbour list (and vesin when installed) on the released glasses.

ase and vesin are asked for the same outputs as radius_graph_pbc (pairs, integer shifts, vectors,
lengths: quantities "ijSDd"); ours also come sorted by dst, theirs do not. "vesin ij" is vesin's
bare pair list, the cheapest thing it computes, for reference.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mgglass.bench import DEFAULT_DATA
from mgglass.data import radius_graph_pbc, read_glass
from mgglass.runtime import keep_freed_memory


def _median_time(fn, reps: int) -> tuple[float, int]:
    n = fn()  # warm-up, and the pair count
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), n


def _replicate(glass, k: int):
    """A k×k×k supercell of a glass (8000 atoms × 8 = 64,000 for k = 2)."""
    atoms = glass.to_atoms().repeat((k, k, k))
    return atoms.positions, np.asarray(atoms.cell[:])


def _row(label, pos, cell, cutoff: float, reps: int, vesin_nl) -> str:
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    tp, tc = torch.tensor(pos, dtype=torch.float32), torch.tensor(cell, dtype=torch.float32)
    t_ours, n_ours = _median_time(lambda: radius_graph_pbc(tp, tc, cutoff).edge_index.shape[1], reps)
    atoms = Atoms(positions=pos, cell=cell, pbc=True)
    ase_reps = 1 if len(pos) > 10000 else max(1, reps // 2)
    # Both libraries are asked for what radius_graph_pbc returns: pairs, shifts, vectors, lengths.
    t_ase, n_ase = _median_time(lambda: len(neighbor_list("ijSDd", atoms, cutoff)[0]), ase_reps)
    row = f"{label:<24}{n_ours:>10}{t_ours * 1e3:>12.1f}{t_ase * 1e3:>10.1f}{t_ase / t_ours:>10.1f}"
    counts = {"ase": n_ase}
    if vesin_nl is not None:
        nl = vesin_nl(cutoff=cutoff, full_list=True)
        t_v, counts["vesin"] = _median_time(lambda: len(nl.compute(pos, cell, True, quantities="ijSDd")[0]), reps)
        t_vp, counts["vesin ij"] = _median_time(lambda: len(nl.compute(pos, cell, True, quantities="ij")[0]), reps)
        row += f"{t_v * 1e3:>10.1f}{t_ours / t_v:>12.2f}{t_vp * 1e3:>12.1f}{t_ours / t_vp:>14.2f}"
    for name, n in counts.items():
        if n != n_ours:
            row += f"  PAIR COUNT MISMATCH ({name} {n})"
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mgglass.bench graph", description=__doc__)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with test0.pickle and train0.pickle")
    p.add_argument("--cutoff", type=float, default=5.0)
    p.add_argument("--reps", type=int, default=31, help="timed calls per library and structure (median reported)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    keep_freed_memory()  # as the training entry points do
    torch.set_num_threads(args.threads)

    try:
        from vesin import NeighborList
    except ImportError:
        NeighborList = None

    cases = []
    for name in ("test0.pickle", "train0.pickle"):
        g = read_glass(args.data / name)
        cases.append((f"{name} ({len(g)})", g.positions, g.cell))
    pos, cell = _replicate(g, 2)  # train0
    cases.append((f"train0 x8 ({len(pos)})", pos, cell))

    header = f"{'structure':<24}{'pairs':>10}{'mgglass ms':>12}{'ase ms':>10}{'ase/ours':>10}"
    header += f"{'vesin ms':>10}{'ours/vesin':>12}{'vesin ij ms':>12}{'ours/vesin ij':>14}" if NeighborList else ""
    print(f"radius graphs at {args.cutoff} Å, median of {args.reps}, {torch.get_num_threads()} torch threads")
    print(header)
    for label, pos, cell in cases:
        print(_row(label, pos, cell, args.cutoff, args.reps, NeighborList), flush=True)
    return 0
