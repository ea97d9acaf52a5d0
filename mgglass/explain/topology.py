"""Optimal H1 cycles of an atomic neighbourhood, and how many of them each atom pair lies on.

The paper counts, for each edge, the optimal one-cycles of the alpha filtration that pass through
it, computed with HomCloud. HomCloud is GPL-3 and pulls plotly, pyvista and VTK, so mgglass takes
the alpha filtration and its persistence pairs from gudhi (MIT, one wheel) and rebuilds HomCloud's
*optimal 1-cycle* exactly as HomCloud defines it (``homcloud/optimal_one_cycle.py``): for an H1 pair
born at edge ``(u, v)``, a breadth-first shortest path from ``u`` to ``v`` through the edges that
enter the filtration before ``(u, v)``, closed by ``(u, v)`` — the cycle with the fewest edges among
those the birth edge closes. Pairs of zero persistence are left out (gudhi's default), as HomCloud's
diagrams leave them out.
"""

from __future__ import annotations

from collections import Counter, deque

import numpy as np


def alpha_h1_cycles(points: np.ndarray, min_persistence: float = 0.0) -> list[dict]:
    """Optimal 1-cycles of the alpha filtration of ``points`` [N, 3] (Å).

    Returns one dict per finite H1 pair: ``birth``/``death`` (alpha², Å²), ``edges`` (the cycle as
    (i, j) vertex pairs, i < j, indices into ``points``)."""
    import gudhi

    points = np.asarray(points, dtype=float)
    if len(points) < 4:
        return []
    st = gudhi.AlphaComplex(points=points).create_simplex_tree()
    order: dict[tuple[int, int], int] = {}
    for k, (simplex, _) in enumerate(st.get_filtration()):
        if len(simplex) == 2:
            order[tuple(sorted(simplex))] = k
    st.compute_persistence(homology_coeff_field=2, min_persistence=min_persistence)
    pairs = [(tuple(sorted(b)), d) for b, d in st.persistence_pairs() if len(b) == 2 and len(d) == 3]
    if not pairs:
        return []
    edges = sorted(order, key=order.get)
    adjacency: dict[int, list[tuple[int, int]]] = {}
    for e in edges:
        i, j = e
        adjacency.setdefault(i, []).append((order[e], j))
        adjacency.setdefault(j, []).append((order[e], i))
    out = []
    for birth_edge, death_tri in pairs:
        path = _shortest_path(adjacency, birth_edge, order[birth_edge])
        if path is None:  # cannot happen for a true H1 birth; kept as a guard
            continue
        out.append({
            "birth": float(st.filtration(list(birth_edge))),
            "death": float(st.filtration(list(death_tri))),
            "edges": [birth_edge, *path],
        })
    return out


def _shortest_path(adjacency, edge: tuple[int, int], before: int) -> list[tuple[int, int]] | None:
    """Fewest-edge path u -> v over edges of filtration index < ``before`` (breadth first)."""
    u, v = edge
    parent = {u: None}
    queue = deque([u])
    while queue:
        a = queue.popleft()
        if a == v:
            path = []
            while parent[a] is not None:
                b = parent[a]
                path.append((min(a, b), max(a, b)))
                a = b
            return path
        for k, b in adjacency.get(a, ()):
            if k < before and b not in parent:
                parent[b] = a
                queue.append(b)
    return None


def cycle_counts(cycles: list[dict]) -> Counter:
    """(i, j) with i < j -> number of cycles through that edge."""
    return Counter(e for c in cycles for e in c["edges"])
