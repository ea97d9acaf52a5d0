"""radius_graph_pbc is exact: same pairs and vectors as ase's neighbour list, in every geometry."""

import numpy as np
import pytest
import torch
from ase.neighborlist import neighbor_list

from mgglass.data import radius_graph_pbc, read_glass

CUTOFF = 5.0


def _ours(pos, cell, cutoff=CUTOFF, self_loops=False):
    g = radius_graph_pbc(torch.as_tensor(pos, dtype=torch.float64), torch.as_tensor(cell, dtype=torch.float64), cutoff, self_loops)
    return g.edge_index.numpy(), g.edge_vec.numpy(), g.edge_len.numpy(), g.shift.numpy().astype(int)


def _assert_same_as_ase(pos, cell, cutoff=CUTOFF):
    from ase import Atoms

    atoms = Atoms(positions=pos, cell=cell, pbc=True)
    # Compare on wrapped positions: both sides then describe images by the same integer shifts.
    atoms.wrap(eps=0)
    i, j, d, shift = neighbor_list("ijDS", atoms, cutoff)
    (src, dst), vec, length, ours_shift = _ours(atoms.positions, cell, cutoff)
    assert len(src) == len(i)
    key_ase = np.lexsort((shift[:, 2], shift[:, 1], shift[:, 0], j, i))
    key_ours = np.lexsort((ours_shift[:, 2], ours_shift[:, 1], ours_shift[:, 0], dst, src))
    assert np.array_equal(src[key_ours], i[key_ase])
    assert np.array_equal(dst[key_ours], j[key_ase])
    assert np.array_equal(ours_shift[key_ours], shift[key_ase])
    np.testing.assert_allclose(vec[key_ours], d[key_ase], atol=1e-9)
    np.testing.assert_allclose(length, np.linalg.norm(vec, axis=1))
    assert length.max() < cutoff
    assert np.all(np.diff(dst) >= 0)  # sorted by dst, for segment reductions
    return len(src)


def _random(n, cell, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 3)) @ np.asarray(cell, dtype=float)


@pytest.mark.parametrize(
    "cell,n",
    [
        (np.eye(3) * 14.0, 160),  # ordinary box
        (np.diag([11.0, 12.5, 30.0]), 150),  # one side below 2 x cutoff
        (np.array([[9.0, 0, 0], [4.0, 8.0, 0], [3.0, -2.5, 7.0]]), 90),  # strongly triclinic
        (np.eye(3) * 3.0, 4),  # tiny: many images of each atom, including of itself
        (np.array([[2.5, 0, 0], [2.3, 1.2, 0], [0.4, 0.3, 3.1]]), 3),  # tiny and triclinic
    ],
)
def test_matches_ase_small_and_triclinic(cell, n):
    assert _assert_same_as_ase(_random(n, cell), cell) > 0


@pytest.mark.parametrize("name", [f"train{i}.pickle" for i in range(7)] + ["test0.pickle"])
def test_matches_ase_on_released_glasses(cuzr_dir, name):
    g = read_glass(cuzr_dir / name)
    n = _assert_same_as_ase(g.positions, g.cell)
    assert 25 < n / len(g) < 40  # Cu64Zr36 at 5 Å: about 30 neighbours per atom


def _edges(pos, cell, perm=None):
    (src, dst), vec, _, _ = _ours(pos, cell)
    if perm is not None:  # map permuted indices back to the original atoms
        src, dst = perm[src], perm[dst]
    rows = np.column_stack([src, dst, np.round(vec, 6)])
    return rows[np.lexsort(rows.T[::-1])]


def test_invariant_under_translation_and_permutation():
    cell = np.array([[12.0, 0, 0], [1.5, 11.0, 0], [0.5, 1.0, 10.0]])
    pos = _random(120, cell, seed=3)
    ref = _edges(pos, cell)
    assert len(ref) > 0
    shifted = pos + np.array([3.3, -17.2, 40.1])
    np.testing.assert_allclose(_edges(shifted, cell), ref, atol=2e-6)
    perm = np.random.default_rng(0).permutation(len(pos))
    np.testing.assert_allclose(_edges(pos[perm], cell, perm), ref, atol=2e-6)


def test_self_loops_and_symmetry():
    cell = np.eye(3) * 12.0
    pos = _random(60, cell, seed=1)
    (src, dst), _, length, shift = _ours(pos, cell, self_loops=True)
    loops = (src == dst) & ~shift.any(1)
    assert loops.sum() == 60 and np.all(length[loops] == 0)
    (src2, _), _, _, _ = _ours(pos, cell)
    assert len(src2) == len(src) - 60
    # Every edge i -> j (shift s) has its reverse j -> i (shift -s) with the opposite vector.
    fwd = {(a, b, *s) for a, b, s in zip(src, dst, shift.tolist())}
    assert all((b, a, *(-x for x in s)) in fwd for a, b, *s in fwd)


def test_float32_and_cutoff_monotone():
    cell = np.eye(3) * 13.0
    pos = _random(100, cell, seed=2)
    g32 = radius_graph_pbc(torch.tensor(pos, dtype=torch.float32), torch.tensor(cell, dtype=torch.float32), 4.0)
    assert g32.edge_vec.dtype == torch.float32
    n4 = g32.edge_index.shape[1]
    n5 = radius_graph_pbc(torch.tensor(pos), torch.tensor(cell), 5.0).edge_index.shape[1]
    assert 0 < n4 < n5


def test_slab_search_matches_ase_on_a_large_triclinic_cell():
    # ≥ 4096 atoms take the two-slab parallel search; slabs follow the first lattice vector, which
    # is not orthogonal to the others here.
    cell = np.array([[40.0, 0, 0], [9.0, 36.0, 0], [-6.0, 5.0, 38.0]])
    assert _assert_same_as_ase(_random(4500, cell, seed=5), cell) > 0


def _edge_set(g) -> list:
    return sorted(zip(g.edge_index[0].tolist(), g.edge_index[1].tolist(), map(tuple, g.shift.tolist())))


def test_slab_search_equals_one_tree_and_ignores_thread_count(cuzr_dir):

    g = read_glass(cuzr_dir / "train0.pickle")
    pos, cell = torch.tensor(g.positions), torch.tensor(g.cell)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = radius_graph_pbc(pos, cell, CUTOFF)
        torch.set_num_threads(2)
        two = radius_graph_pbc(pos, cell, CUTOFF)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two):  # the same edges in the same order, whatever the machine
        assert torch.equal(a, b)
    three = radius_graph_pbc(pos, cell, CUTOFF, slabs=3)  # the counting sort holds for any slab count
    whole = radius_graph_pbc(pos, cell, CUTOFF, slab_min_atoms=10**9)  # one KD-tree over all ghosts
    for other in (three, whole):  # same dst order; within a dst the order may differ
        assert torch.equal(other.edge_index[1], one.edge_index[1])
        assert _edge_set(other) == _edge_set(one)


def test_slab_search_leaves_no_threads_behind():
    # The slab threads run parallel torch ops, so each gets an OpenMP team of its own; while they
    # live, every later 2-thread op of the process runs ~2x slower (an 8000-atom prediction after
    # its graph: 0.37 -> 0.63 s). The search must end its threads before it returns.
    import threading

    cell = np.eye(3) * 40.0
    pos = torch.as_tensor(_random(4500, cell, seed=3))
    threads, before = torch.get_num_threads(), threading.active_count()
    try:
        torch.set_num_threads(2)  # the slab search runs in threads only with several torch threads
        radius_graph_pbc(pos, torch.as_tensor(cell), CUTOFF)
    finally:
        torch.set_num_threads(threads)
    assert threading.active_count() == before


def test_capped_search_as_on_gpu_retries_until_exact():
    # The GPU path searches with a neighbour cap of 128 and retries with a larger one when a query
    # fills it; force that path on CPU where atoms have ~270 neighbours at this density.
    from mgglass.data import graph

    cell = torch.eye(3, dtype=torch.float64) * 10.0
    pos = torch.tensor(_random(1000, cell.numpy(), seed=7))
    ghost_pos, _, _, _ = graph._ghosts(pos, cell, graph._image_counts(cell, CUTOFF).tolist())
    uncapped = graph._pairs(ghost_pos, 1000, CUTOFF, False, capped=False)
    capped = graph._pairs(ghost_pos, 1000, CUTOFF, False, capped=True)
    assert torch.bincount(uncapped[0]).max() > 128  # the first try really was too small
    assert torch.equal(capped[0], uncapped[0])
    assert sorted(zip(*(t.tolist() for t in capped))) == sorted(zip(*(t.tolist() for t in uncapped)))
