"""Per-atom energy barriers by activation–relaxation saddle searches (ART-style) on LAMMPS forces.

One event for atom i: from the glass's local energy minimum, displace i and its neighbours within
``radius`` Å along a random direction (total length ``push`` Å), then climb to a first-order saddle
with the dimer method (ase.mep.dimer: the dimer follows the lowest-curvature mode, the translation
inverts the force along it) until the largest force is below ``fmax`` eV/Å. An event counts when
it converged, its curvature is negative, its energy lies above the minimum, and the saddle is
local (no atom moved more than ``max_move`` Å). Its barrier is E_saddle − E_min. The atom's EB is
the mean barrier over its accepted events (``--stat min`` gives the lowest instead); how ARTn's
released labels aggregate events is not stated in the paper, so both are reported.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from mgglass.data.structure import Glass


class EngineCalculator(Calculator):
    """ase calculator over a :class:`mgglass.md.engine.Engine` (same atoms, same order)."""

    implemented_properties = ("energy", "forces")

    def __init__(self, engine):
        super().__init__()
        self.engine = engine
        self.calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.engine.set_positions(self.atoms.positions)
        energy, forces = self.engine.energy_forces()
        self.results = {"energy": energy, "forces": forces}
        self.calls += 1


@dataclass
class Event:
    atom: int
    barrier: float  # eV; nan when not accepted
    accepted: bool
    reason: str
    curvature: float
    max_move: float
    force_calls: int
    seconds: float
    positions: np.ndarray | None = field(default=None, repr=False)  # the saddle configuration
    mode: np.ndarray | None = field(default=None, repr=False)  # the dimer's unit direction there, [N, 3]


def minimise(engine) -> tuple[np.ndarray, float]:
    """Relax positions at fixed cell (conjugate gradient); (positions in glass order, energy eV)."""
    engine.cmd("min_style cg\nminimize 0.0 1e-6 10000 100000")
    energy, _ = engine.energy_forces()
    return engine.positions() - engine.origin(), energy


def _min_image(d: np.ndarray, cell: np.ndarray) -> np.ndarray:
    lengths = np.diag(cell)
    return d - np.round(d / lengths) * lengths


def find_saddle(engine, minimum: np.ndarray, e_min: float, atom: int, rng: np.random.Generator, radius: float = 3.5,
                push: float = 0.5, fmax: float = 0.01, max_steps: int = 400, max_move: float = 3.0) -> Event:
    """One ART-style event started at ``atom`` (see the module docstring)."""
    from ase.mep.dimer import DimerControl, MinModeAtoms, MinModeTranslate

    t0 = time.perf_counter()
    cell = engine.cell()
    atoms = Atoms(numbers=engine.numbers, positions=minimum, cell=cell, pbc=True)
    calc = EngineCalculator(engine)
    atoms.calc = calc
    near = np.linalg.norm(_min_image(minimum - minimum[atom], cell), axis=1) < radius
    disp = np.zeros_like(minimum)
    disp[near] = rng.normal(size=(int(near.sum()), 3))
    disp *= push / np.linalg.norm(disp)
    control = DimerControl(logfile=None, eigenmode_logfile=None, initial_eigenmode_method="displacement",
                           displacement_method="vector", max_num_rot=4, maximum_translation=0.1, f_rot_min=0.05)
    d_atoms = MinModeAtoms(atoms, control, logfile=None)
    d_atoms.displace(displacement_vector=disp, mask=near.tolist(), log=False)
    opt = MinModeTranslate(d_atoms, trajectory=None, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=max_steps))
    energy = float(d_atoms.get_potential_energy())
    curvature = float(d_atoms.get_curvature())
    moved = float(np.linalg.norm(_min_image(d_atoms.get_positions() - minimum, cell), axis=1).max())
    reason = ("did not converge" if not converged else "positive curvature" if curvature >= 0
              else "not above the minimum" if energy <= e_min + 1e-4 else "not local" if moved > max_move else "")
    return Event(atom, energy - e_min if not reason else float("nan"), not reason, reason or "saddle", curvature, moved,
                 calc.calls, time.perf_counter() - t0, d_atoms.get_positions(), d_atoms.get_eigenmode().copy())


def hessian_negative_modes(engine, positions: np.ndarray, step: float = 1e-3, tol: float = 1e-3) -> tuple[int, np.ndarray]:
    """(number of negative eigenvalues, eigenvalues in eV/Å²) of the finite-difference Hessian at
    ``positions`` — for small glasses (6N force calls); the 3 translations give ~0 and are not counted."""
    x = positions.reshape(-1).copy()
    h = np.empty((x.size, x.size))
    for k in range(x.size):
        row = []
        for sign in (1, -1):
            x[k] += sign * step
            engine.set_positions(x.reshape(-1, 3))
            row.append(engine.energy_forces()[1].reshape(-1))
            x[k] -= sign * step
        h[k] = -(row[0] - row[1]) / (2 * step)
    eig = np.linalg.eigvalsh(0.5 * (h + h.T))
    engine.set_positions(positions)
    return int((eig < -tol).sum()), eig


def atom_row(atom: int, ok: list[float], stat: str, events: int, force_calls: int, seconds: float,
             rejected: list[str]) -> dict:
    """One atom's CSV row from its accepted barriers ``ok`` (eV): the EB by ``stat``, mean and min."""
    mean, low = (float(np.mean(ok)), float(np.min(ok))) if ok else (float("nan"), float("nan"))
    return {"atom": atom, "eb_md": mean if stat == "mean" else low, "eb_mean": mean, "eb_min": low, "accepted": len(ok),
            "events": events, "force_calls": force_calls, "seconds": seconds, "rejected": ";".join(rejected),
            # every accepted barrier, so runs with other seeds can be pooled and re-aggregated
            "eb_events": ";".join(f"{b:.6f}" for b in ok)}


def barriers(glass: Glass, atoms: list[int], events: int = 3, seed: int = 0, stat: str = "mean", threads: int = 1,
             on_row=None, **search) -> tuple[list[dict], dict]:
    """Per-atom barriers of ``atoms`` (events each) on ``glass`` relaxed to its local minimum first.
    ``on_row(row)`` is called as each atom finishes, so a long run can save as it goes."""
    from mgglass.md.engine import Engine

    if stat not in ("mean", "min"):
        raise ValueError(f"stat must be 'mean' or 'min', not {stat!r}")
    rows, t0 = [], time.perf_counter()
    with Engine(glass, threads=threads) as engine:
        minimum, e_min = minimise(engine)
        for n, atom in enumerate(atoms):
            rng = np.random.default_rng([seed, atom])
            evs = [find_saddle(engine, minimum, e_min, atom, rng, **search) for _ in range(events)]
            ok = [e.barrier for e in evs if e.accepted]
            rows.append(atom_row(atom, ok, stat, events, sum(e.force_calls for e in evs), sum(e.seconds for e in evs),
                                 [e.reason for e in evs if not e.accepted]))
            if on_row is not None:
                on_row(rows[-1])
            eb = rows[-1]["eb_md"]
            print(f"barriers: atom {atom} ({n + 1}/{len(atoms)}): {len(ok)}/{events} saddles, EB {eb:.3f} eV, "
                  f"{rows[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)
    info = {"atoms": len(atoms), "events_per_atom": events, "stat": stat, "seed": seed, "e_min_ev": e_min,
            "seconds": time.perf_counter() - t0, "threads": threads}
    return rows, info
