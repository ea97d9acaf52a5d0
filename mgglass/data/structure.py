"""The glass structure type and its readers (SymGNN pickles and every format ase reads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from .errors import GlassDataError
from .safe_pickle import UnsafePickleError, safe_load

DEFAULT_SPECIES = ("Cu", "Zr")
# The released pickles number species 1 = Cu, 2 = Zr.
PICKLE_TYPES = {1: "Cu", 2: "Zr"}
PICKLE_SUFFIXES = {".pickle", ".pkl"}
PICKLE_LABEL_KEY = "trajectory_start_velocities"  # the EB label; the name is a leftover upstream
# Other per-atom quantities the released pickles carry: potential energy (eV), pressure, von Mises stress.
PICKLE_EXTRA_KEYS = ("pot", "press", "von")


@dataclass
class Glass:
    """One periodic structure: positions (Å, wrapped into the cell), atomic numbers, 3×3 cell
    (rows are lattice vectors), optional per-atom labels (eV), the file it came from, and any other
    per-atom scalar arrays the file holds (``extras``: e.g. the pickles' ``pot``, ``press``, ``von``)."""

    positions: np.ndarray
    numbers: np.ndarray
    cell: np.ndarray
    labels: np.ndarray | None = None
    source: str = "<memory>"
    pbc: bool = True
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.numbers)

    @property
    def symbols(self) -> list[str]:
        return [chemical_symbols[z] for z in self.numbers]

    def to_atoms(self, label_key: str = "eb") -> Atoms:
        atoms = Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)
        if self.labels is not None:
            atoms.arrays[label_key] = np.asarray(self.labels, dtype=float)
        return atoms

    @classmethod
    def from_atoms(cls, atoms: Atoms, label_key: str | None = None, source: str = "<memory>", labels_optional: bool = False) -> Glass:
        labels = None
        if label_key is not None:
            if label_key in atoms.arrays:
                labels = np.asarray(atoms.arrays[label_key], dtype=np.float64).reshape(len(atoms), -1)[:, 0]
            elif not labels_optional:
                raise GlassDataError(source, f"no per-atom array {label_key!r} (has: {', '.join(sorted(atoms.arrays))})")
        extras = {
            k: np.asarray(v, dtype=np.float64)
            for k, v in atoms.arrays.items()
            if k not in ("numbers", "positions", label_key) and v.ndim == 1 and v.dtype.kind in "fi"
        }
        return cls(
            positions=np.asarray(atoms.positions, dtype=np.float64),
            numbers=np.asarray(atoms.numbers, dtype=np.int64),
            cell=np.asarray(atoms.cell[:], dtype=np.float64),
            labels=labels,
            source=source,
            pbc=bool(np.all(atoms.pbc)),
            extras=extras,
        )

    def species_index(self, species: tuple[str, ...] | list[str] = DEFAULT_SPECIES) -> np.ndarray:
        """Map atomic numbers to model indices (species[i] -> i); an unknown species is an error."""
        table = {atomic_numbers[s]: i for i, s in enumerate(species)}
        unknown = sorted(set(self.numbers.tolist()) - set(table))
        if unknown:
            names = ", ".join(chemical_symbols[z] for z in unknown)
            raise GlassDataError(self.source, f"unknown species {names} (species map: {', '.join(species)})")
        return np.array([table[z] for z in self.numbers.tolist()], dtype=np.int64)

    def fractions(self, species: tuple[str, ...] | list[str] = DEFAULT_SPECIES) -> np.ndarray:
        """Share of each species, in ``species`` order."""
        return np.bincount(self.species_index(species), minlength=len(species)) / len(self)

    def summary(self, species: tuple[str, ...] | list[str] = DEFAULT_SPECIES) -> dict:
        """The glass in a few numbers (what ``mgglass.level`` needs of a glass a fit saw, small enough
        to keep in a checkpoint): its mean label (None without labels), species fractions, and the mean
        of each per-atom array that holds one finite value per atom."""
        means = {}
        for key, values in self.extras.items():
            values = np.asarray(values, dtype=float)
            if values.shape == (len(self),) and np.isfinite(values).all():
                means[key] = float(values.mean())
        return {"mean_label": None if self.labels is None else float(np.mean(self.labels)),
                "fractions": [float(f) for f in self.fractions(species)], "means": means}

    def validate(self, periodic: bool = True) -> Glass:
        """Check the structure and wrap atoms into the cell; raises GlassDataError naming the problem."""
        src = self.source
        n = len(self.numbers)
        if n == 0:
            raise GlassDataError(src, "empty structure (no atoms)")
        if self.positions.shape != (n, 3):
            raise GlassDataError(src, f"positions have shape {self.positions.shape}, expected ({n}, 3)")
        if not np.all(np.isfinite(self.positions)):
            raise GlassDataError(src, "positions contain NaN or infinite values")
        if self.cell.shape != (3, 3) or not np.all(np.isfinite(self.cell)):
            raise GlassDataError(src, "cell must be a finite 3x3 matrix")
        if self.labels is not None:
            if len(self.labels) != n:
                raise GlassDataError(src, f"{len(self.labels)} labels for {n} atoms")
            if not np.all(np.isfinite(self.labels)):
                raise GlassDataError(src, "labels contain NaN or infinite values")
        if periodic:
            if not self.pbc:
                raise GlassDataError(src, "cell is not periodic in all three directions (periodic graphs need pbc)")
            volume = abs(np.linalg.det(self.cell))
            if not volume > 1e-6:
                raise GlassDataError(src, f"cell has zero volume ({volume:.3g} Å^3)")
            # Atoms outside the box are wrapped, not rejected.
            frac = np.linalg.solve(self.cell.T, self.positions.T).T
            frac -= np.floor(frac)
            frac[frac >= 1.0] = 0.0  # floor rounding can leave exactly 1.0
            self.positions = frac @ self.cell
        return self


def _read_symgnn_pickle(path: Path) -> Glass:
    try:
        d = safe_load(path)
    except UnsafePickleError as e:
        raise GlassDataError(path, f"unsafe pickle: {e}") from None
    except Exception as e:  # noqa: BLE001 - truncated or foreign pickles raise many types
        raise GlassDataError(path, f"corrupt pickle ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise GlassDataError(path, f"expected a pickled dict, got {type(d).__name__}")
    missing = [k for k in ("positions", "types", "box") if k not in d]
    if missing:
        raise GlassDataError(path, f"missing keys {', '.join(missing)}")
    types = np.asarray(d["types"]).reshape(-1).astype(np.int64)
    unknown = sorted(set(types.tolist()) - set(PICKLE_TYPES))
    if unknown:
        raise GlassDataError(path, f"unknown species type ids {unknown} (known: 1=Cu, 2=Zr)")
    numbers = np.array([atomic_numbers[PICKLE_TYPES[t]] for t in types.tolist()], dtype=np.int64)
    box = np.asarray(d["box"], dtype=np.float64).reshape(-1)
    if box.shape != (3,):
        raise GlassDataError(path, f"box has shape {box.shape}, expected (3,)")
    labels = d.get(PICKLE_LABEL_KEY)
    positions = np.asarray(d["positions"], dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:  # reshaped, an [N, 2] array read as another atom count
        raise GlassDataError(path, f"positions have shape {positions.shape}, expected ({len(types)}, 3)")
    return Glass(
        positions=positions,
        numbers=numbers,
        cell=np.diag(box),
        labels=None if labels is None else np.asarray(labels, dtype=np.float64).reshape(-1),
        source=str(path),
        extras={k: np.asarray(d[k], dtype=np.float64).reshape(-1) for k in PICKLE_EXTRA_KEYS if k in d},
    )


def read_glass(
    path: str | Path,
    label_key: str | None = "eb",
    periodic: bool = True,
    format: str | None = None,
    species: tuple[str, ...] | list[str] = DEFAULT_SPECIES,
    labels_optional: bool = False,
) -> Glass:
    """Read one glass. SymGNN pickles (.pickle/.pkl) take their EB labels from their own key; any other
    file goes through ase.io.read, with labels from the per-atom array ``label_key`` (None: no labels;
    LAMMPS dumps name custom columns e.g. ``v_eb`` or ``c_eb``). LAMMPS type t is species[t - 1].
    ``labels_optional``: a file without the label array is read unlabelled instead of refused."""
    path = Path(path)
    if not path.is_file():
        raise GlassDataError(path, "no such file")
    if path.suffix in PICKLE_SUFFIXES and format is None:
        glass = _read_symgnn_pickle(path)
    else:
        import ase.io
        import ase.io.formats

        try:
            fmt = format or ase.io.formats.filetype(str(path))
            kwargs = {"specorder": list(species)} if str(fmt).startswith("lammps-dump") else {}
            atoms = ase.io.read(path, index=0, format=fmt, **kwargs)
        except Exception as e:  # noqa: BLE001 - ase raises many types for unreadable files
            raise GlassDataError(path, f"cannot be read by ase ({type(e).__name__}: {e})") from None
        glass = Glass.from_atoms(atoms, label_key=label_key, source=str(path), labels_optional=labels_optional)
    return glass.validate(periodic=periodic)
