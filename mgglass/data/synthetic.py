"""Deterministic synthetic binary 'glasses' with a learnable per-atom label; no downloads needed.

Structure: random sequential packing of ``n_atoms`` points in a periodic cube at number density
``density`` (Å⁻³) with a minimum pair distance ``min_dist``; species 1 (Zr) with probability
``zr_fraction``, else Cu.

Label (eV), a fixed function of local structure plus Gaussian noise::

    cn_i  = Σ_j sigmoid((3.5 − r_ij) / 0.2)            over neighbours j within 5 Å
    zr_i  = Σ_j [j is Zr] sigmoid(...) / max(cn_i, 1)   (Zr share of the first shell)
    y_i   = 1.5 + 0.3·[i is Zr] + 0.1·(cn_i − mean cn) − 0.4·zr_i + noise·N(0, 1)

The files also carry cn_i as the per-atom array ``cn`` (an auxiliary target for tests).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_numbers

from .graph import radius_graph_pbc
from .structure import PICKLE_LABEL_KEY, PICKLE_TYPES, Glass

LABEL_KEY = "eb"


def _pack(n_atoms: int, box: float, min_dist: float, rng: np.random.Generator) -> np.ndarray:
    pos = np.empty((n_atoms, 3))
    placed = 0
    attempts = 0
    while placed < n_atoms:
        attempts += 1
        if attempts > 2000 * n_atoms:
            raise RuntimeError(f"could not pack {n_atoms} atoms at min distance {min_dist} Å; lower the density")
        cand = rng.uniform(0.0, box, size=3)
        d = pos[:placed] - cand
        d -= box * np.round(d / box)
        if placed == 0 or np.min(np.einsum("ij,ij->i", d, d)) >= min_dist**2:
            pos[placed] = cand
            placed += 1
    return pos


def _first_shell(positions: np.ndarray, numbers: np.ndarray, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cn, zr) of the module docstring."""
    g = radius_graph_pbc(torch.from_numpy(positions), torch.from_numpy(cell), 5.0)
    src, dst = g.edge_index.numpy()
    w = 1.0 / (1.0 + np.exp(-(3.5 - g.edge_len.numpy()) / 0.2))
    is_zr = (numbers == 40).astype(float)
    cn = np.bincount(src, weights=w, minlength=len(numbers))
    zr = np.bincount(src, weights=w * is_zr[dst], minlength=len(numbers)) / np.maximum(cn, 1.0)
    return cn, zr


def _label(numbers: np.ndarray, cn: np.ndarray, zr: np.ndarray) -> np.ndarray:
    return 1.5 + 0.3 * (numbers == 40) + 0.1 * (cn - cn.mean()) - 0.4 * zr


def synthetic_labels(positions: np.ndarray, numbers: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """The noiseless label of the module docstring."""
    return _label(numbers, *_first_shell(positions, numbers, cell))


def make_glass(
    n_atoms: int = 128,
    seed: int = 0,
    zr_fraction: float = 0.36,
    density: float = 0.06,
    min_dist: float = 2.0,
    noise: float = 0.05,
) -> Glass:
    """A seeded synthetic glass: the same arguments give the same structure and labels."""
    rng = np.random.default_rng(seed)
    box = (n_atoms / density) ** (1.0 / 3.0)
    positions = _pack(n_atoms, box, min_dist, rng)
    numbers = np.where(rng.random(n_atoms) < zr_fraction, 40, 29).astype(np.int64)
    cell = np.eye(3) * box
    cn, zr = _first_shell(positions, numbers, cell)  # one radius graph for the label and cn
    labels = _label(numbers, cn, zr) + noise * rng.standard_normal(n_atoms)
    # cn: a per-atom quantity besides the label (an auxiliary target in tests, like the pickles' `pot`)
    return Glass(positions, numbers, cell, labels, source=f"<synthetic seed={seed}>", extras={"cn": cn}).validate()


def name_seed(name: str, seed: int) -> int:
    """A stable per-file seed, so each named synthetic file differs and never changes."""
    return int.from_bytes(hashlib.sha256(f"{name}:{seed}".encode()).digest()[:4], "little")


def write_synthetic(folder: str | Path, names: list[str], n_atoms: int = 128, seed: int = 0) -> list[Path]:
    """Write one file per name unless it already exists: extxyz (labels in the ``eb`` array, the
    first-shell count in ``cn``), or for a ``.pickle`` name a dict as the released glasses have it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        path = folder / name
        if not path.exists() or _text_under_a_pickle_name(path):
            glass = make_glass(n_atoms, seed=name_seed(name, seed))
            tmp = path.with_suffix(f".{os.getpid()}.tmp")  # per process: ranks may write at once
            if path.suffix == ".pickle":  # the released files' format, so the official split's names work
                _write_pickle(tmp, glass)
            else:
                atoms = glass.to_atoms(LABEL_KEY)
                atoms.arrays.update(glass.extras)
                atoms.write(tmp, format="extxyz")
            tmp.replace(path)
        out.append(path)
    return out


def _text_under_a_pickle_name(path: Path) -> bool:
    """An extxyz file that versions before the pickle writer left under a ``.pickle`` name (unreadable)."""
    if path.suffix != ".pickle":
        return False
    with open(path, "rb") as f:
        return f.read(1) != b"\x80"  # every pickle of protocol 2 or later starts so


def _write_pickle(path: Path, glass: Glass) -> None:
    """``glass`` as the released pickles hold one (types 1 = Cu, 2 = Zr; an orthorhombic box)."""
    types = {atomic_numbers[symbol]: t for t, symbol in PICKLE_TYPES.items()}
    d = {"positions": glass.positions, "types": np.array([types[int(z)] for z in glass.numbers]),
         "box": np.diag(glass.cell).copy(), PICKLE_LABEL_KEY: glass.labels, **glass.extras}
    with open(path, "wb") as f:
        pickle.dump(d, f)
