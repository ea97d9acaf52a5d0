"""mgglass.level: the line mean EB = a + b · mean energy over the glasses a fit saw, a glass's
predictions moved onto it, and the glasses it refuses (another composition, no energies)."""

from __future__ import annotations

import numpy as np
import pytest
from test_md import needs_lammps

from mgglass.data import make_glass
from mgglass.level import LevelError, LevelLine, Series, mean_level

SPECIES = ["Cu", "Zr"]


def _glass(seed: int, level: float, mean_eb: float, n: int = 64):
    g = make_glass(n, seed=seed)
    g.numbers = np.where(np.arange(n) < 23, 40, 29)  # Cu64Zr36, as the released glasses
    e = np.random.default_rng(seed).normal(0, 0.1, n)
    g.extras["e"] = level + e - e.mean()  # per-atom energies around the glass's level
    g.labels = g.labels - g.labels.mean() + mean_eb
    g.source = f"g{seed}.xyz"
    return g


def test_line_through_the_glasses_means_moves_a_glass_onto_it():
    seen = [_glass(1, -4.48, 1.8), _glass(2, -4.47, 1.6), _glass(3, -4.46, 1.3)]
    line = LevelLine.fit(seen, "e", SPECIES)
    b, a = np.polyfit([-4.48, -4.47, -4.46], [1.8, 1.6, 1.3], 1)
    assert line.slope == pytest.approx(b) and line.intercept == pytest.approx(a)
    assert line.level_range == pytest.approx((-4.48, -4.46))
    new = _glass(4, -4.49, 0.0)  # more relaxed than every glass the line saw
    level = line.level_of(new)
    assert level == pytest.approx(-4.49)
    pred = np.random.default_rng(0).normal(1.5, 0.3, len(new))
    moved, info = line.shift(pred, level)
    assert moved.mean() == pytest.approx(a + b * -4.49)
    np.testing.assert_allclose(moved - pred, info["shift_ev"])  # one shift per glass: r unchanged
    assert info["network_mean_ev"] == pytest.approx(pred.mean()) and not info["inside_fitted_range"]
    assert line.shift(pred, -4.47)[1]["inside_fitted_range"]
    # Glasses of one file name in two folders (members' data roots) are two points, not one.
    twins = [_glass(1, -4.48, 1.8), _glass(2, -4.47, 1.6), _glass(3, -4.46, 1.3)]
    for g, src in zip(twins, ("a/g.xyz", "b/g.xyz", "a/h.xyz")):
        g.source = src
    assert set(LevelLine.fit(twins, "e", SPECIES).glasses) == {"a/g.xyz", "b/g.xyz", "h.xyz"}


def test_line_refuses_what_it_cannot_place():
    seen = [_glass(1, -4.48, 1.8), _glass(2, -4.47, 1.6)]
    line = LevelLine.fit(seen, "e", SPECIES)
    cu = _glass(5, -4.47, 1.0)
    cu.numbers[:] = 29  # pure Cu: not the composition the line was fitted on
    with pytest.raises(LevelError, match=r"g5.xyz: composition Cu100Zr0 is not that of the glasses the level line was fitted on \(Cu64Zr36\)"):
        line.level_of(cu)
    bare = _glass(6, -4.47, 1.0)
    del bare.extras["e"]
    with pytest.raises(LevelError, match=r"g6.xyz: no per-atom array 'e'"):
        line.level_of(bare)
    short, holed = _glass(8, -4.47, 1.0), _glass(9, -4.47, 1.0)
    short.extras["e"] = short.extras["e"][:10]  # a pickle's 'pot' of another glass: its mean was taken
    holed.extras["e"][3] = np.nan  # one NaN made every moved prediction NaN
    with pytest.raises(LevelError, match=r"g8.xyz: per-atom array 'e' has shape \(10,\), not one value for each of its 64 atoms"):
        line.level_of(short)
    with pytest.raises(LevelError, match=r"g9.xyz: per-atom array 'e' has 1 values that are not finite"):
        line.level_of(holed)
    with pytest.raises(LevelError, match="two levels at least"):
        LevelLine.fit([_glass(1, -4.47, 1.8), _glass(2, -4.47, 1.6)], "e", SPECIES)
    unlabelled = _glass(7, -4.46, 1.0)
    unlabelled.labels = None
    with pytest.raises(LevelError, match="g7.xyz: the level line needs the labels"):
        LevelLine.fit([*seen, unlabelled], "e", SPECIES)


def test_an_ensembles_line_is_over_every_glass_any_member_saw():
    """Members fitted on different glasses (fold models): the line goes through the union of their
    training and validation glasses, read from the data settings their checkpoints hold."""
    from mgglass.data import GlassDataModule, read_glass

    common = {"root": "synthetic", "synthetic_atoms": 64, "test": [], "_instantiator": "lightning.pytorch.cli.instantiate_module"}
    settings = [{**common, "train": ["a.xyz", "b.xyz"], "val": ["c.xyz"]}, {**common, "train": ["d.xyz", "a.xyz"], "val": ["c.xyz"]}]
    line = LevelLine.of_fits(settings, "cn")
    assert sorted(line.glasses) == ["a.xyz", "b.xyz", "c.xyz", "d.xyz"]
    names = ("a.xyz", "b.xyz", "c.xyz", "d.xyz")
    glasses = [read_glass(f) for f in GlassDataModule(root="synthetic", train=names, synthetic_atoms=64).files("train")]
    b, a = np.polyfit([g.extras["cn"].mean() for g in glasses], [g.labels.mean() for g in glasses], 1)
    assert line.slope == pytest.approx(b) and line.intercept == pytest.approx(a)


@needs_lammps
def test_eam_level_is_the_md_extras_mean_energy():
    from mgglass.md.engine import Engine

    g = make_glass(64, seed=3)
    with Engine(g) as engine:
        expected = engine.energies().mean()
    assert mean_level(g, "eam") == pytest.approx(expected, abs=1e-12)


def test_series_says_which_glasses_lie_outside_the_glasses_a_fit_saw():
    """Series: the range of the fit's glasses' mean energy and composition, read from the summaries a
    checkpoint keeps (one per member); a glass beyond either gets one line, a glass inside none."""
    seen = [_glass(1, -4.48, 1.8), _glass(2, -4.47, 1.6), _glass(3, -4.46, 1.3)]
    settings = [{"species": SPECIES, "_glass_summaries": {g.source: g.summary(SPECIES) for g in seen[:2]}},
                {"species": SPECIES, "_glass_summaries": {g.source: g.summary(SPECIES) for g in seen[1:]}}]
    series = Series.of_fits(settings, "e")
    assert (series.lo, series.hi) == pytest.approx((-4.48, -4.46))
    assert series == Series.of_line(LevelLine.fit(seen, "e", SPECIES))  # the same glasses, either way
    inside = series.place(_glass(4, -4.47, 0.0))
    assert inside["inside"] and inside["composition_inside"] and series.notice("g4.xyz", inside) is None
    relaxed = series.place(_glass(5, -4.49, 0.0))
    assert relaxed["mean"] == pytest.approx(-4.49) and not relaxed["inside"] and relaxed["composition_inside"]
    assert series.notice("g5.xyz", relaxed).startswith(
        "g5.xyz: mean e -4.4900 is outside the range of the glasses the fit saw (-4.4800 to -4.4600): its barriers are extrapolated")
    cu = _glass(6, -4.47, 0.0)
    cu.numbers[:] = 29
    line = series.notice("g6.xyz", series.place(cu))
    assert "composition Cu100Zr0 is not that of the glasses the fit saw (Cu64Zr36)" in line and "mean e" not in line
    bare = _glass(7, -4.49, 0.0)
    del bare.extras["e"]
    assert series.place(bare) is None  # nothing to place it by: nothing said
    # A checkpoint without summaries (before 2026-12-06), or glasses without the array: no series.
    assert Series.of_fits([{"species": SPECIES}], "e") is None and Series.of_fits(settings, "pot") is None
