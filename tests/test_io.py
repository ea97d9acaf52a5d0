"""Reading glasses: the released pickles, ase formats, the restricted unpickler and bad inputs."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms

from mgglass.data import Glass, GlassDataError, read_glass


def test_released_pickle_reads(cuzr_dir):
    g = read_glass(cuzr_dir / "test0.pickle")
    assert len(g) == 3000
    assert g.symbols.count("Cu") == 1920 and g.symbols.count("Zr") == 1080
    assert np.allclose(np.diag(g.cell), [36.176804, 36.218193, 36.26252], atol=1e-4)
    # Positions arrive centred on the origin and are wrapped into [0, L).
    assert g.positions.min() >= 0 and np.all(g.positions < np.diag(g.cell))
    assert g.labels.shape == (3000,) and abs(g.labels[0] - 1.69358) < 1e-5
    assert list(g.species_index()[:5]) == [0 if s == "Cu" else 1 for s in g.symbols[:5]]


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_hostile_pickle_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.pickle"
    bad.write_bytes(pickle.dumps({"positions": _Evil(), "types": np.ones(1), "box": np.ones(3)}))
    with pytest.raises(GlassDataError, match=r"evil\.pickle: unsafe pickle: refused .*system"):
        read_glass(bad)
    assert not (tmp_path / "pwned").exists()


def _atoms(n=20, seed=0, box=10.0):
    rng = np.random.default_rng(seed)
    a = Atoms(["Cu"] * (n - 5) + ["Zr"] * 5, positions=rng.uniform(0, box, (n, 3)), cell=[box] * 3, pbc=True)
    a.arrays["eb"] = rng.normal(1.5, 0.3, n)
    return a


@pytest.mark.parametrize("fmt,suffix", [("extxyz", ".extxyz"), ("lammps-data", ".lmp"), ("vasp", ".vasp"), ("cif", ".cif")])
def test_ase_formats_round_trip(tmp_path, fmt, suffix):
    a = _atoms()
    path = tmp_path / f"g{suffix}"
    kwargs = {"specorder": ["Cu", "Zr"], "masses": True} if fmt == "lammps-data" else {}
    a.write(path, format=fmt, **kwargs)
    label_key = "eb" if fmt == "extxyz" else None
    g = read_glass(path, label_key=label_key, format=None if fmt != "lammps-data" else "lammps-data")
    assert sorted(g.symbols) == sorted(a.get_chemical_symbols())
    assert np.allclose(np.abs(np.linalg.det(g.cell)), 1000.0)
    if label_key:
        assert np.allclose(g.labels, a.arrays["eb"])


def test_lammps_dump_with_label_column(tmp_path):
    path = tmp_path / "g.dump"
    path.write_text(
        "ITEM: TIMESTEP\n0\nITEM: NUMBER OF ATOMS\n3\nITEM: BOX BOUNDS pp pp pp\n0 10\n0 10\n0 10\n"
        "ITEM: ATOMS id type x y z v_eb\n1 1 1.0 1.0 1.0 0.5\n2 2 5.0 5.0 5.0 0.7\n3 1 12.0 1.0 1.0 0.9\n"
    )
    # LAMMPS type t is species[t - 1]; dumped variables keep their v_ prefix.
    g = read_glass(path, label_key="v_eb", format="lammps-dump-text")
    assert g.symbols == ["Cu", "Zr", "Cu"] and np.allclose(g.labels, [0.5, 0.7, 0.9])
    assert np.all(g.positions < 10)  # the atom at x = 12 is wrapped


def test_species_map_and_unknown_species():
    g = Glass.from_atoms(_atoms(), label_key="eb")
    assert set(g.species_index(["Zr", "Cu"]).tolist()) == {0, 1}
    a = _atoms()
    a[0].symbol = "Al"
    with pytest.raises(GlassDataError, match="unknown species Al"):
        Glass.from_atoms(a, source="x.extxyz").species_index()


def _write(tmp_path, atoms, name="g.extxyz"):
    path = tmp_path / name
    atoms.write(path, format="extxyz")
    return path


@pytest.mark.parametrize(
    "mutate,problem",
    [
        (lambda a: a.positions.__setitem__((0, 0), np.nan), "positions contain NaN"),
        (lambda a: a.arrays["eb"].__setitem__(3, np.inf), "labels contain NaN or infinite"),
        (lambda a: a.set_pbc([True, True, False]), "not periodic"),
        (lambda a: a.set_cell([[1, 0, 0], [2, 0, 0], [0, 0, 1]]), "zero volume"),
    ],
)
def test_bad_structures(tmp_path, mutate, problem):
    a = _atoms()
    mutate(a)
    path = _write(tmp_path, a)
    with pytest.raises(GlassDataError, match=rf"^{path}: .*{problem}"):
        read_glass(path)


def test_missing_corrupt_empty_and_count_mismatch(tmp_path):
    with pytest.raises(GlassDataError, match="nope.extxyz: no such file"):
        read_glass(tmp_path / "nope.extxyz")
    torn = tmp_path / "torn.pickle"
    torn.write_bytes(pickle.dumps({"positions": np.zeros((3, 3))})[:20])
    with pytest.raises(GlassDataError, match="torn.pickle: corrupt pickle"):
        read_glass(torn)
    garbage = tmp_path / "garbage.extxyz"
    garbage.write_text("this is not a structure\n")
    with pytest.raises(GlassDataError, match="garbage.extxyz: cannot be read"):
        read_glass(garbage)
    empty = tmp_path / "empty.pickle"
    empty.write_bytes(pickle.dumps({"positions": np.zeros((0, 3)), "types": np.zeros(0), "box": np.ones(3) * 5}))
    with pytest.raises(GlassDataError, match="empty structure"):
        read_glass(empty)
    short = tmp_path / "short.pickle"
    d = {"positions": np.ones((4, 3)), "types": np.ones(4), "box": np.ones(3) * 5, "trajectory_start_velocities": np.ones(3)}
    short.write_bytes(pickle.dumps(d))
    with pytest.raises(GlassDataError, match="short.pickle: 3 labels for 4 atoms"):
        read_glass(short)
    flat = tmp_path / "flat.pickle"  # [6, 2] positions: read as [4, 3], they gave another glass's shape
    flat.write_bytes(pickle.dumps({**d, "positions": np.ones((6, 2)), "trajectory_start_velocities": np.ones(4)}))
    with pytest.raises(GlassDataError, match=r"flat.pickle: positions have shape \(6, 2\), expected \(4, 3\)"):
        read_glass(flat)
    g = Glass(np.ones((2, 3)), np.array([29, 40]), np.eye(3) * 5, None)
    assert g.validate(periodic=True) is g


def test_atoms_outside_box_are_wrapped():
    a = _atoms()
    a.positions[0] = [-3.0, 25.0, 10.0]
    g = Glass.from_atoms(a, label_key="eb").validate()
    assert np.allclose(g.positions[0], [7.0, 5.0, 0.0])


def test_cli_error_is_one_line_and_nonzero(tmp_path):
    bad = tmp_path / "evil.pickle"
    bad.write_bytes(pickle.dumps(_Evil()))
    r = subprocess.run([sys.executable, "-m", "mgglass.data", str(bad)], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0 and "evil.pickle" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("cutoff", ["nan", "inf", "-1", "0"])
def test_cli_refuses_a_cutoff_that_is_no_length(tmp_path, capsys, cutoff):
    from mgglass.data import make_glass
    from mgglass.data.__main__ import main

    make_glass(64, seed=0).to_atoms().write(tmp_path / "g.extxyz")
    assert main([str(tmp_path / "g.extxyz"), "--cutoff", cutoff]) == 2  # nan and inf were tracebacks, -1 "0 edges/atom"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cutoff must be a positive number of Å" in err[0]
