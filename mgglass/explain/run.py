"""Explain a set of atoms of one glass and analyse the explanations (no files, no MLflow: see artifacts)."""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from mgglass.inference import receptive_hops

from .analysis import (
    GROUPS,
    distance_profile,
    edge_groups,
    group_statistics,
    half_box_of,
    relative_positions,
)
from .explainer import ExplainableNet, ExplainerSettings, explain_atom, neighbourhood
from .topology import alpha_h1_cycles, cycle_counts


@dataclass
class AnalysisSettings:
    """How explanations are summarised.

    Args:
        group_size: edges per importance group (top, middle, bottom, random) of each explained atom.
        ph_radius: Å; the alpha complex of each explained atom is built on the atoms this close to it
            (must stay below a third of the box so the unwrapped ball is consistent), and the groups
            are drawn from the edges inside this ball.
        bin_width: Å, distance-profile bins.
        table_edges: edges per explained atom written to the table, most important first (0: all);
            group members are always written.
    """

    group_size: int = 20
    ph_radius: float = 10.0
    bin_width: float = 0.1
    table_edges: int = 1000


@dataclass
class AtomExplanation:
    atom: int
    sub: object  # the neighbourhood graph (torch_geometric Data)
    importance: np.ndarray  # [E_sub]
    rel: np.ndarray  # [N_sub, 3] positions relative to the atom (Å, unwrapped)
    groups: dict[str, np.ndarray]
    cycles: np.ndarray  # [E_sub] optimal H1 cycles through each edge; -1 outside the ball
    seconds: float
    prediction: float
    n_cycles: int = 0
    top_outside_ball: int = 0

    @property
    def atom_importance(self) -> np.ndarray:
        """[N_sub] the largest importance of an edge at each atom."""
        out = np.zeros(self.sub.num_nodes)
        for end in self.sub.edge_index.numpy():
            np.maximum.at(out, end, self.importance)
        return out


def fit_to_glass(analysis: AnalysisSettings, data) -> AnalysisSettings:
    """``analysis`` with ``ph_radius`` below a third of the glass's box (a wider ball would meet its own
    periodic images): 95 % of that bound where the setting is wider, said on stderr."""
    limit = 2 * half_box_of(data) / 3
    if analysis.ph_radius < limit:
        return analysis
    fitted = round(0.95 * limit, 2)
    print(f"mgglass.explain: ph_radius {analysis.ph_radius} Å does not fit this glass (it must be below a third of "
          f"its box, {limit:.2f} Å); cycles are counted within {fitted} Å", file=sys.stderr, flush=True)
    return dataclasses.replace(analysis, ph_radius=fitted)


def explain_atoms(task, data, atoms: list[int], settings: ExplainerSettings, analysis: AnalysisSettings,
                  seed: int = 0, progress=None) -> list[AtomExplanation]:
    """Explain ``atoms`` of ``data`` (a glass graph) with ``task``'s net; cycles counted per atom."""
    hops = receptive_hops(task.net)
    if hops is None:
        raise ValueError(f"{type(task.net).__name__} does not state its message-passing depth (receptive_hops)")
    analysis = fit_to_glass(analysis, data)
    model = ExplainableNet(task.net).eval()
    rng = np.random.default_rng(seed)
    out = []
    for k, atom in enumerate(atoms):
        t0 = time.perf_counter()
        sub, centre = neighbourhood(data, atom, hops)
        imp, pred_norm = explain_atom(model, sub, centre, settings, seed=seed + k)
        seconds = time.perf_counter() - t0
        pred = float(task.to_ev(torch.tensor(pred_norm)))
        rel_all = relative_positions(data, atom)
        rel = rel_all[sub.node_id.numpy()]
        cycles, n_cycles, consistent = _cycles_per_edge(sub, rel_all, analysis.ph_radius)
        used = imp > 0  # GNNExplainer zeroes edges that do not reach the atom
        groups = edge_groups(imp, used & consistent, analysis.group_size, rng)
        top_all = np.argsort(-imp, kind="stable")[: analysis.group_size]
        out.append(AtomExplanation(atom, sub, imp, rel, groups, cycles, seconds, pred, n_cycles,
                                   int((~consistent[top_all]).sum())))
        if progress is not None:
            progress(k, atom, seconds)
    return out


def _cycles_per_edge(sub, rel_all: np.ndarray, radius: float) -> tuple[np.ndarray, int, np.ndarray]:
    """(cycles through each edge of ``sub``, -1 where not counted; number of H1 cycles; whether each
    edge lies inside the ball with an unwrapped vector that matches its own)."""
    ball = np.flatnonzero(np.linalg.norm(rel_all, axis=1) < radius)
    cycles = alpha_h1_cycles(rel_all[ball])
    counts = cycle_counts(cycles)
    where = np.full(len(rel_all), -1)
    where[ball] = np.arange(len(ball))
    node = sub.node_id.numpy()
    src, dst = where[node[sub.edge_index[0].numpy()]], where[node[sub.edge_index[1].numpy()]]
    inside = (src >= 0) & (dst >= 0)
    vec_ok = np.zeros(len(src), dtype=bool)
    vec_ok[inside] = np.abs(rel_all[ball][dst[inside]] - rel_all[ball][src[inside]] - sub.edge_vec[inside].double().numpy()).max(1) < 1e-3
    per_edge = np.full(len(src), -1)
    for e in np.flatnonzero(vec_ok):
        a, b = src[e], dst[e]
        per_edge[e] = counts.get((min(a, b), max(a, b)), 0)
    return per_edge, len(cycles), vec_ok


def summarise(explained: list[AtomExplanation], analysis: AnalysisSettings, half_box: float) -> dict:
    """Distance profile, cycle statistics per group, timing."""
    top_d, all_d = [], []
    counts: dict[str, list[int]] = {g: [] for g in GROUPS}
    for ex in explained:
        dist = np.linalg.norm(ex.rel, axis=1)
        centre = int(np.argmin(dist))
        ei = ex.sub.edge_index.numpy()
        top_atoms = np.setdiff1d(np.unique(ei[:, ex.groups["top"]]), [centre])
        top_d.append(dist[top_atoms])
        all_d.append(np.delete(dist, centre))
        for g in GROUPS:
            counts[g].extend(ex.cycles[ex.groups[g]].tolist())
    top_d, all_d = np.concatenate(top_d), np.concatenate(all_d)
    r_max = float(np.floor(half_box))
    seconds = [ex.seconds for ex in explained]
    return {
        "atoms": [ex.atom for ex in explained],
        "distance_profile": distance_profile(top_d, all_d[all_d < r_max], analysis.bin_width, r_max),
        "cycles": group_statistics(counts),
        "cycle_counts": counts,
        "h1_cycles_per_ball": float(np.mean([ex.n_cycles for ex in explained])),
        "top_edges_outside_ball": int(sum(ex.top_outside_ball for ex in explained)),
        "seconds_per_atom": float(np.mean(seconds)),
        "neighbourhood_edges": float(np.mean([ex.sub.num_edges for ex in explained])),
        "neighbourhood_atoms": float(np.mean([ex.sub.num_nodes for ex in explained])),
    }
