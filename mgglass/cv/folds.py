"""Leave-one-glass-out folds over a set of labelled glasses, and the rule that picks each fold's
validation glasses (never the held-out one).

The released glasses are a relaxation series, so the rules order glasses by their mean per-atom
potential energy (``pot``; lower is more relaxed):

* ``least-relaxed`` (default): the remaining glass with the highest mean ``pot`` validates — the
  official split's own choice (train6 validates train0-5), and for the fold that holds train6 out,
  train5;
* ``ends``: the least and the most relaxed remaining glasses validate together (selection then sees
  both ends of the series, scored by ``checkpoint.monitor``);
* a comma-separated list of glass names: those that are not held out.

Groups (``--groups train0+train1,train5+train6``) name glasses that must not inform each other's
score: the fold of a glass of a group leaves the whole group out of training and validation (each
glass still gets its own fold and score). train0 and train1 are one structure with two ARTn
labellings, train6 is train5 deformed (docs/notes/new-glasses.md): without groups their
folds train on the held-out atoms' twins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

RULES = ("least-relaxed", "ends")
OFFICIAL_GLASSES = tuple(f"train{i}.pickle" for i in range(7))  # test0 stays the untouched test glass


class FoldError(ValueError):
    """A fold plan that cannot be made, said in one line."""


@dataclass(frozen=True)
class Fold:
    """One fit: train on ``train``, select on ``val``, score on ``held_out``."""

    held_out: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    left_out: tuple[str, ...] = ()  # the held-out glass's group (--groups): in neither train nor val

    @property
    def name(self) -> str:
        return glass_stem(self.held_out)


def glass_stem(name: str) -> str:
    """``train3.pickle`` -> ``train3``, ``runs/T0.50.extxyz`` -> ``T0.50``: how folds, runs and table
    rows name a glass (:func:`plan_folds` refuses glasses that share one)."""
    return PurePath(name).stem


def validation_for(held_out: str, rest: list[str], rule: str, levels: dict[str, float] | None) -> tuple[str, ...]:
    """The validation glasses of the fold that holds ``held_out`` out (``rest``: the other glasses)."""
    if rule in RULES:
        if levels is None or any(not np.isfinite(levels.get(g, np.nan)) for g in rest):
            raise FoldError(f"--val {rule} orders glasses by their mean per-atom level (--level_key), which "
                            "some glasses lack; name the validation glasses instead (--val NAME[,NAME])")
        by_level = sorted(rest, key=lambda g: levels[g])  # most relaxed first
        return (by_level[-1],) if rule == "least-relaxed" else tuple(dict.fromkeys([by_level[-1], by_level[0]]))
    named = [g.strip() for g in rule.split(",") if g.strip()]
    unknown = [g for g in named if g not in rest and g != held_out]
    if unknown:
        raise FoldError(f"--val {rule}: {', '.join(unknown)} not among the glasses ({', '.join([held_out, *rest])})")
    val = tuple(g for g in named if g != held_out)
    if not val:
        raise FoldError(f"--val {rule}: the fold that holds {held_out} out has no validation glass left")
    return val


def parse_groups(text: str | None, glasses: list[str]) -> list[tuple[str, ...]]:
    """``a+b,c+d`` (file names or stems) -> [(a, b), (c, d)] as file names of ``glasses``."""
    if not text:
        return []
    stems = {glass_stem(g): g for g in glasses}
    groups, seen = [], set()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        names = [n.strip() for n in part.split("+") if n.strip()]
        unknown = [n for n in names if n not in glasses and n not in stems]
        if unknown:
            raise FoldError(f"--groups {part}: {', '.join(unknown)} not among the glasses ({', '.join(stems)})")
        group = tuple(dict.fromkeys(n if n in glasses else stems[n] for n in names))
        if len(group) < 2:
            raise FoldError(f"--groups {part}: a group needs two glasses or more (glass+glass)")
        if seen & set(group):
            raise FoldError(f"--groups: {', '.join(sorted(seen & set(group)))} in two groups")
        seen |= set(group)
        groups.append(group)
    return groups


def plan_folds(glasses: list[str], rule: str = "least-relaxed", levels: dict[str, float] | None = None,
               only: list[str] | None = None, groups: list[tuple[str, ...]] | None = None) -> list[Fold]:
    """One fold per glass of ``glasses`` (or per glass of ``only``, named by file or stem): the others
    minus the fold's validation glasses train; with ``groups`` (:func:`parse_groups`), minus the held-out
    glass's group too."""
    if len(set(glasses)) != len(glasses):
        raise FoldError(f"a glass is named twice in {', '.join(glasses)}")
    by_stem: dict[str, list[str]] = {}
    for g in glasses:
        by_stem.setdefault(glass_stem(g), []).append(g)
    shared = next((names for names in by_stem.values() if len(names) > 1), None)
    if shared:  # one fold folder, run and reference cache for two glasses would mix their fits
        raise FoldError(f"{' and '.join(shared)} both go by {glass_stem(shared[0])!r}, the name of a glass's fold, runs "
                        "and table rows (its file name without folder and suffix); rename one")
    if len(glasses) < 3:
        raise FoldError(f"leave-one-glass-out needs at least 3 glasses (train, validation, held out); got {len(glasses)}")
    stems = {glass_stem(g): g for g in glasses}
    held = list(glasses)
    if only:
        missing = [f for f in only if f not in glasses and f not in stems]
        if missing:
            raise FoldError(f"--folds: {', '.join(missing)} not among the glasses ({', '.join(stems)})")
        held = [g for g in glasses if g in only or glass_stem(g) in only]
    folds = []
    for g in held:
        out = next((set(grp) for grp in groups or () if g in grp), {g})
        rest = [x for x in glasses if x not in out]
        val = validation_for(g, rest, rule, levels)
        train = tuple(x for x in rest if x not in val)
        if not train:
            raise FoldError(f"the fold that holds {g} out has no training glass left (validation: {', '.join(val)})")
        folds.append(Fold(g, train, val, tuple(x for x in glasses if x in out and x != g)))
    return folds
