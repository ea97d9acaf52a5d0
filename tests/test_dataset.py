"""Graphs on disk, synthetic glasses, downloads and the DataModule."""

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mgglass.data import (
    GlassDataError,
    GlassDataModule,
    load_graph,
    make_glass,
    read_glass,
    write_synthetic,
)
from mgglass.data.datamodule import EvalShardSampler
from mgglass.data.download import SHA256, fetch, resolve_files
from mgglass.data.synthetic import synthetic_labels


def test_synthetic_is_seeded_and_learnable():
    a, b, c = make_glass(100, seed=5), make_glass(100, seed=5), make_glass(100, seed=6)
    assert np.array_equal(a.positions, b.positions) and np.array_equal(a.labels, b.labels)
    assert not np.allclose(a.positions, c.positions)
    # Minimum distance holds under periodic boundaries.
    d = a.positions[:, None] - a.positions[None]
    d -= np.diag(a.cell) * np.round(d / np.diag(a.cell))
    r = np.linalg.norm(d, axis=-1) + np.eye(len(a)) * 99
    assert r.min() >= 2.0
    clean = synthetic_labels(a.positions, a.numbers, a.cell)
    assert np.corrcoef(clean, a.labels)[0, 1] > 0.8  # the label is mostly structure, a little noise
    assert clean.std() > 0.1


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_graph_cache_is_keyed_and_safe(tmp_path):
    (path,) = write_synthetic(tmp_path / "data", ["g.extxyz"], n_atoms=80)
    cache = tmp_path / "cache"
    d1 = load_graph(path, cache=cache)
    (entry,) = cache.glob("*.pt")
    d2 = load_graph(path, cache=cache)  # from the cache
    assert torch.equal(d1.edge_index, d2.edge_index) and torch.equal(d1.y, d2.y)
    assert d2.name == "g.extxyz" and d2.species.dtype == torch.long
    # A cache entry that holds code is not executed: it is dropped and rebuilt.
    entry.write_bytes(pickle.dumps(_Evil(tmp_path / "pwned")))
    d3 = load_graph(path, cache=cache)
    assert not (tmp_path / "pwned").exists()
    assert torch.equal(d3.edge_index, d1.edge_index)
    torch.load(entry, weights_only=True)  # rewritten as plain tensors
    # A different cutoff is another entry with other edges.
    d4 = load_graph(path, cutoff=4.0, cache=cache)
    assert len(list(cache.glob("*.pt"))) == 2 and d4.edge_index.shape[1] < d1.edge_index.shape[1]
    # A changed file rebuilds.
    lines = path.read_text().splitlines()
    x = lines[2].split()[1]
    lines[2] = lines[2].replace(x, f"{float(x) + 0.3:.8f}", 1)
    path.write_text("\n".join(lines) + "\n")
    d5 = load_graph(path, cache=cache)
    assert len(list(cache.glob("*.pt"))) == 3 and not torch.equal(d5.pos, d1.pos)


def test_download_verifies_sha256(cuzr_dir, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(cuzr_dir / "test0.pickle", mirror / "test0.pickle")
    shutil.copy(cuzr_dir / "train0.pickle", mirror / "train1.pickle")  # wrong bytes under an official name
    url = mirror.as_uri() + "/"
    got = fetch("test0.pickle", tmp_path / "dl", base_url=url)
    assert got.read_bytes() == (cuzr_dir / "test0.pickle").read_bytes()
    with pytest.raises(GlassDataError, match="SHA-256 mismatch"):
        fetch("train1.pickle", tmp_path / "dl", base_url=url)
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["test0.pickle"]  # bad file removed
    with pytest.raises(GlassDataError, match="download failed"):
        fetch("train2.pickle", tmp_path / "dl", base_url=url)
    with pytest.raises(GlassDataError, match="not an official file"):
        fetch("other.pickle", tmp_path / "dl", base_url=url)
    assert len(SHA256) == 8


def test_data_source_order(tmp_path, monkeypatch, cuzr_dir):
    monkeypatch.setenv("MGGLASS_DATA_DIR", str(cuzr_dir))
    assert resolve_files(["a.pickle"], root=tmp_path) == [tmp_path / "a.pickle"]
    assert resolve_files(["test0.pickle"]) == [cuzr_dir / "test0.pickle"]
    monkeypatch.delenv("MGGLASS_DATA_DIR")
    mirror = tmp_path / "m"
    mirror.mkdir()
    shutil.copy(cuzr_dir / "test0.pickle", mirror)
    (p,) = resolve_files(["test0.pickle"], base_url=mirror.as_uri())
    assert p.parent.name == "cuzr" and p.is_file()
    # A glass of one's own, named by its path, with no data folder set: that file, not a download.
    assert resolve_files([str(mirror / "test0.pickle"), "m/mine.extxyz"], base_url="file:///nowhere") == [mirror / "test0.pickle", Path("m/mine.extxyz")]
    with pytest.raises(GlassDataError, match="give a file of your own by its path"):
        resolve_files(["mine.extxyz"])


def test_datamodule_normalises_from_train_only():
    dm = GlassDataModule(root="synthetic", train=["a.extxyz", "b.extxyz"], val=["v.extxyz"], test=["t.extxyz"], synthetic_atoms=64)
    dm.prepare_data()
    dm.setup("fit")
    train_y = torch.cat([g.y for g in dm.graphs["train"]]).double()
    assert dm.y_mean == pytest.approx(float(train_y.mean())) and dm.y_std == pytest.approx(float(train_y.std()))
    all_y = torch.cat([g.y for s in dm.graphs.values() for g in s]).double()
    assert dm.y_mean != pytest.approx(float(all_y.mean()), abs=1e-9)
    v = dm.graphs["val"][0]
    assert torch.allclose(v.y_norm, (v.y - dm.y_mean) / dm.y_std)
    batch = next(iter(dm.train_dataloader()))
    assert batch.num_graphs == 1 and batch.edge_vec.shape[1] == 3 and batch.cell.shape == (1, 3, 3)
    # The normaliser travels with the state (so checkpoints predict in eV).
    dm2 = GlassDataModule(root="synthetic", train=["a.extxyz"], val=["v.extxyz"], test=["t.extxyz"], synthetic_atoms=64)
    dm2.load_state_dict(dm.state_dict())
    dm2.setup("test")
    assert dm2.y_mean == dm.y_mean and dm2.y_std == dm.y_std
    assert len(dm.content_hash()) == 64 and dm.content_hash() != dm2.content_hash()
    # So does a summary of the glasses the fit saw (mgglass.predict --level needs no files with it).
    summaries = dm.state_dict()["glass_summaries"]
    assert list(summaries) == ["a.extxyz", "b.extxyz", "v.extxyz"] and dm2.glass_summaries() == summaries
    a = read_glass(dm.files("train")[0])
    assert summaries["a.extxyz"]["mean_label"] == pytest.approx(a.labels.mean())
    assert summaries["a.extxyz"]["means"]["cn"] == pytest.approx(a.extras["cn"].mean())
    assert summaries["a.extxyz"]["fractions"] == pytest.approx(np.bincount(a.species_index(), minlength=2) / len(a))


def test_glass_summary_keeps_only_per_atom_arrays_it_can_average():
    g = make_glass(32, seed=1)
    g.extras = {"e": np.arange(32.0), "short": np.ones(3), "holed": np.r_[np.nan, np.ones(31)]}
    s = g.summary(["Cu", "Zr"])
    assert s["means"] == {"e": pytest.approx(15.5)} and sum(s["fractions"]) == pytest.approx(1.0)
    g.labels = None
    assert g.summary()["mean_label"] is None


def test_datamodule_missing_file_is_clear(tmp_path):
    dm = GlassDataModule(root=str(tmp_path), train=["nope.pickle"], val=[], test=[])
    with pytest.raises(GlassDataError, match=r"nope\.pickle: no such file"):
        dm.prepare_data()


def test_official_split_on_released_glasses(cuzr_dir):
    dm = GlassDataModule(root=str(cuzr_dir))
    assert [p.name for p in dm.files("train")] == [f"train{i}.pickle" for i in range(6)]
    dm.setup("fit")
    assert [len(g.species) for g in dm.graphs["val"]] == [8000]
    assert [len(g.species) for g in dm.graphs["test"]] == [3000]
    assert 1.0 < dm.y_mean < 3.0 and 0.1 < dm.y_std < 1.5


def test_shard_samplers_split_without_duplicates():
    from torch.utils.data import DistributedSampler

    shards = [list(EvalShardSampler(7, rank, 3)) for rank in range(3)]
    flat = sorted(i for sh in shards for i in sh)
    assert flat == list(range(7)) and [len(s) for s in shards] == [3, 2, 2]
    # Training shards are padded so every rank takes the same number of steps; the order follows
    # the seed and epoch, as before the switch to torch's sampler (same permutation, same striding).
    padded = []
    for rank in range(4):
        s = DistributedSampler(range(6), num_replicas=4, rank=rank, shuffle=True, seed=1)
        s.set_epoch(2)
        padded.append(list(s))
    assert [len(s) for s in padded] == [2, 2, 2, 2] and set().union(*padded) == set(range(6))
    order = torch.randperm(6, generator=torch.Generator().manual_seed(1 + 2)).tolist()
    assert padded[0] == (order + order[:2])[0::4]


def test_auxiliary_targets_are_standardised_within_species_and_glass(cuzr_dir):
    from mgglass.data import glass_to_data, read_glass

    glass = read_glass(cuzr_dir / "test0.pickle")
    assert set(glass.extras) == {"pot", "press", "von"}  # the pickles' other per-atom quantities
    d = glass_to_data(glass, aux_keys=("pot", "von"))
    assert d.aux.shape == (3000, 2)
    for s in (0, 1):
        m = (d.species == s).numpy()
        a = d.aux[m].double()
        np.testing.assert_allclose(a.mean(0).numpy(), 0.0, atol=1e-5)
        np.testing.assert_allclose(a.std(0, unbiased=False).numpy(), 1.0, atol=1e-4)
        # an affine map of the raw values within a species: order and correlation kept
        assert np.corrcoef(a[:, 0].numpy(), glass.extras["pot"][m])[0, 1] == pytest.approx(1.0, abs=1e-6)
    assert "aux" not in glass_to_data(glass)  # only on request


def test_auxiliary_target_missing_is_a_one_line_error_naming_the_file(tmp_path):
    path = write_synthetic(tmp_path, ["g.xyz"], n_atoms=32)[0]
    with pytest.raises(GlassDataError) as e:
        load_graph(path, aux_keys=("pot",), cache=False)
    msg = str(e.value)
    assert "g.xyz" in msg and "'pot'" in msg and "has: cn" in msg and "\n" not in msg


def test_auxiliary_targets_are_part_of_the_cache_key(tmp_path):
    path = write_synthetic(tmp_path / "glasses", ["g.xyz"], n_atoms=32)[0]
    cache = tmp_path / "cache"
    plain = load_graph(path, cache=cache)
    with_aux = load_graph(path, cache=cache, aux_keys=("cn",))
    again = load_graph(path, cache=cache, aux_keys=("cn",))  # from the cache
    assert "aux" not in plain and "aux" not in load_graph(path, cache=cache)
    assert with_aux.aux.shape == (32, 1)
    torch.testing.assert_close(again.aux, with_aux.aux)
    assert len(list(cache.glob("*.pt"))) == 2


def test_training_glasses_are_held_in_spatial_order_with_their_labels(tmp_path):
    from mgglass.data import load_graph
    from mgglass.data.order import grid_cell_ids

    dm = GlassDataModule(root="synthetic", train=["a.extxyz"], val=["v.extxyz"], test=["t.extxyz"], synthetic_atoms=400,
                         cache=str(tmp_path))
    dm.setup("fit")
    train, val = dm.graphs["train"][0], dm.graphs["val"][0]
    raw = load_graph(dm.files("train")[0], cache=False)
    grid = torch.clamp((train.cell[0].double().norm(dim=1) / 5.0).floor().long(), min=1)
    cells = grid_cell_ids(train, grid)
    assert bool((cells[1:] >= cells[:-1]).all()) and not torch.equal(train.pos, raw.pos)  # renumbered by cell
    # the same atoms with their labels and the same edges (dst-sorted) under the renumbering
    perm = torch.cdist(train.pos.double(), raw.pos.double()).argmin(1)
    assert torch.equal(perm.sort().values, torch.arange(raw.num_nodes))
    assert torch.equal(train.y, raw.y[perm]) and torch.equal(train.species, raw.species[perm])
    assert bool((train.edge_index[1][1:] >= train.edge_index[1][:-1]).all())
    assert sorted(map(tuple, perm[train.edge_index].t().tolist())) == sorted(map(tuple, raw.edge_index.t().tolist()))
    assert torch.equal(val.pos, load_graph(dm.files("val")[0], cache=False).pos)  # validation keeps the file's order


def test_synthetic_glasses_under_the_official_names_are_pickles_as_released():
    """``data.root: synthetic`` with the default split: its ``.pickle`` names get pickled dicts in the
    released format (they were extxyz text under a pickle's name, read back as a corrupt pickle)."""
    from mgglass.data.safe_pickle import safe_load
    from mgglass.data.synthetic import make_glass, name_seed

    dm = GlassDataModule(root="synthetic", synthetic_atoms=64)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.graphs["train"]) == 6 and len(dm.graphs["val"]) == 1
    path = dm.files("train")[0]
    d = safe_load(path)
    assert path.name == "train0.pickle" and sorted(set(d["types"].tolist())) == [1, 2] and d["box"].shape == (3,)
    glass = make_glass(64, seed=name_seed("train0.pickle", 0))
    np.testing.assert_allclose(np.sort(d["trajectory_start_velocities"]), np.sort(glass.labels))
    torch.testing.assert_close(torch.sort(dm.graphs["train"][0].y.double())[0], torch.sort(torch.as_tensor(glass.labels))[0], rtol=0, atol=1e-6)


def test_an_older_synthetic_text_file_under_a_pickle_name_is_rewritten(tmp_path):
    from mgglass.data.structure import read_glass
    from mgglass.data.synthetic import write_synthetic

    (tmp_path / "x.pickle").write_text("64\nLattice=...\n")  # what the extxyz writer left there before
    (tmp_path / "y.pickle").write_bytes(b"\x80 not touched")
    write_synthetic(tmp_path, ["x.pickle", "y.pickle"], n_atoms=64)
    assert read_glass(tmp_path / "x.pickle").labels.shape == (64,)
    assert (tmp_path / "y.pickle").read_bytes() == b"\x80 not touched"  # a pickle is left as it is
