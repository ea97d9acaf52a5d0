"""Cu–Zr glasses by melt-quench: random alloy → melt → NPT quench → energy minimisation.

The random alloy is a jittered simple-cubic arrangement (no overlaps) at the volume per atom the
pure metals' atomic volumes mix to, with species shuffled to the exact composition; it melts at
``melt_k`` for ``melt_ps`` (NPT, zero pressure), is cooled linearly to ``final_k`` over
``quench_ps`` (the rate is (melt_k − final_k) / quench_ps), and the cell and positions are then
relaxed to a local minimum at zero pressure (conjugate gradient to a largest force of 1e-4 eV/Å with
the cell, then 1e-5 eV/Å at fixed cell). Timestep 2 fs; Nosé–Hoover damping 0.1 ps
(thermostat) and 1 ps (barostat).
"""

from __future__ import annotations

import re
import sys
import time

import numpy as np

from mgglass.data.structure import Glass
from mgglass.md.engine import TIMESTEP_PS

# Atomic volumes (Å³) of fcc Cu (a = 3.615 Å) and hcp Zr (a = 3.232, c = 5.147 Å): their mix is within
# 1% of the released Cu64Zr36 glasses' 15.8 Å³ per atom.
ATOMIC_VOLUME = {"Cu": 11.81, "Zr": 23.28}


def parse_composition(text: str) -> dict[str, float]:
    """'Cu64Zr36' → {'Cu': 0.64, 'Zr': 0.36} (percentages or any positive amounts)."""
    parts = re.findall(r"([A-Z][a-z]?)(\d+(?:\.\d+)?)", text)
    if not parts or "".join(f"{s}{n}" for s, n in parts) != text:
        raise ValueError(f"composition {text!r}: expected element symbols with amounts, e.g. Cu64Zr36")
    amounts = {s: float(n) for s, n in parts}
    unknown = sorted(set(amounts) - set(ATOMIC_VOLUME))
    if unknown or sum(amounts.values()) <= 0:
        raise ValueError(f"composition {text!r}: only Cu and Zr are supported (the Cu–Zr potential), with positive amounts")
    total = sum(amounts.values())
    return {s: a / total for s, a in amounts.items()}


def random_alloy(composition: dict[str, float], atoms: int, seed: int, expand: float = 1.05) -> Glass:
    """``atoms`` atoms on a jittered cubic grid in a cubic cell at ``expand`` × the mixed atomic volume."""
    from ase.data import atomic_numbers

    rng = np.random.default_rng(seed)
    counts = {s: round(x * atoms) for s, x in composition.items()}
    first = next(iter(counts))
    counts[first] += atoms - sum(counts.values())  # rounding goes to the first element
    volume = expand * sum(ATOMIC_VOLUME[s] * n for s, n in counts.items())
    side = volume ** (1 / 3)
    m = int(np.ceil(atoms ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3)
    sites = grid[rng.choice(len(grid), atoms, replace=False)]
    spacing = side / m
    pos = (sites + 0.5 + rng.uniform(-0.15, 0.15, (atoms, 3))) * spacing
    numbers = np.concatenate([np.full(n, atomic_numbers[s]) for s, n in counts.items()])
    rng.shuffle(numbers)
    return Glass(positions=pos, numbers=numbers, cell=np.eye(3) * side, source=f"random {atoms}-atom alloy, seed {seed}")


def run_with_progress(engine, steps: int, label: str, segments: int = 50) -> None:
    """``run steps`` in ``segments`` pieces with a progress bar on a terminal; elsewhere (CI, files) the
    bar is off and one line per stage is printed instead."""
    from tqdm import tqdm

    bar = tqdm(total=steps, desc=label, unit="step", disable=None, file=sys.stderr, dynamic_ncols=True)
    t0, done = time.perf_counter(), 0
    piece = max(1, steps // segments)
    engine.cmd("reset_timestep 0")  # start/stop below count from here, so a ramp spans the whole stage
    while done < steps:
        n = min(piece, steps - done)
        # The first piece sets the run up (new fixes need it); the rest continue it.
        engine.cmd(f"run {n} start 0 stop {steps} pre {'yes' if done == 0 else 'no'} post no")
        done += n
        bar.update(n)
    bar.close()
    if bar.disable:
        print(f"{label}: {steps} steps in {time.perf_counter() - t0:.0f} s, T {engine.thermo('temp'):.0f} K, "
              f"volume/atom {engine.thermo('vol') / engine.n:.2f} Å³", file=sys.stderr, flush=True)


def quench(composition: str, atoms: int = 3000, seed: int = 0, quench_ps: float = 100.0, melt_ps: float = 20.0,
           melt_k: float = 2000.0, final_k: float = 300.0, threads: int = 1) -> tuple[Glass, np.ndarray, dict]:
    """(glass, per-atom potential energy in eV, run info) made by melt-quench as the module says."""
    from mgglass.md.engine import Engine

    if atoms < 50 or quench_ps <= 0 or melt_ps < 0 or not final_k < melt_k:
        raise ValueError("need atoms >= 50, quench_ps > 0, melt_ps >= 0 and final_k < melt_k")
    start = random_alloy(parse_composition(composition), atoms, seed)
    t0 = time.perf_counter()
    with Engine(start, threads=threads) as e:
        e.cmd(f"""
            min_style cg
            minimize 1e-6 1e-8 200 2000
            velocity all create {melt_k} {seed + 1} dist gaussian mom yes rot yes
            fix md all npt temp {melt_k} {melt_k} 0.1 iso 0.0 0.0 1.0
        """)
        run_with_progress(e, round(melt_ps / TIMESTEP_PS), f"melt {melt_k:.0f} K")
        e.cmd(f"unfix md\nfix md all npt temp {melt_k} {final_k} 0.1 iso 0.0 0.0 1.0")
        run_with_progress(e, round(quench_ps / TIMESTEP_PS), f"quench to {final_k:.0f} K")
        e.cmd("""
            unfix md
            velocity all set 0.0 0.0 0.0
            fix relax all box/relax iso 0.0 vmax 0.001
            minimize 0.0 1e-4 5000 50000
            unfix relax
            minimize 0.0 1e-5 5000 50000
        """)
        energies = e.energies()
        glass = e.glass()
        info = {"composition": composition, "atoms": atoms, "seed": seed, "melt_k": melt_k, "melt_ps": melt_ps,
                "final_k": final_k, "quench_ps": quench_ps, "rate_k_per_s": (melt_k - final_k) / (quench_ps * 1e-12),
                "seconds": time.perf_counter() - t0, "pressure_bar": e.thermo("press"),
                "volume_per_atom": float(np.prod(np.diag(glass.cell)) / atoms), "energy_per_atom_ev": float(energies.mean())}
    glass.source = f"{composition} melt-quench, {atoms} atoms, seed {seed}, {quench_ps:g} ps"
    return glass, energies, info
