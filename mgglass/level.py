"""A glass's level from its mean per-atom energy (``mgglass.predict --level KEY``).

The network ranks a glass's atoms from their surroundings, but it places the glass's *level* (its mean
barrier) from batch norms that pull the glasses at the ends of the training series toward its middle.
Across the released relaxation series the glasses' mean barrier follows their mean per-atom potential
energy closely, so a line mean EB = a + b · mean energy, fitted over the glasses a fit saw (training
and validation), places a new glass of the same composition and potential better: measured on the
grouped leave-one-glass-out folds, R² 0.425 → 0.454 on average and 0.165 → 0.369 on the least relaxed
glass (docs/notes/new-glasses.md#level). r does not change: every atom of a glass moves by one shift.

The energy is a per-atom array both the fit's glasses and the new glass carry (the released pickles'
``pot``), or ``eam``: energies computed for both with the ``md`` extra's Cu–Zr EAM potential. The two
must come from one source: the wheel's EAM file is not the potential of the released ``pot`` (means
~0.06 eV/atom apart), though it ranks atoms alike (r 0.997).

:class:`Series` says, without moving anything, whether a glass lies among the glasses a fit saw (their
range of mean energy and their composition): outside it, held-out glasses were predicted measurably
worse (docs/notes/new-glasses.md), so ``mgglass.predict`` says so for each such glass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mgglass.data import GlassDataError, GlassDataModule, glass_names
from mgglass.data.structure import Glass, read_glass
from mgglass.md.engine import Engine, MDError, MDUnavailable

EAM = "eam"  # --level eam: per-atom energies from the md extra's EAM potential
# How far (species fraction) a glass may lie outside the compositions of the line's glasses: the line
# is one composition's; another composition's energies sit on another line.
COMPOSITION_MARGIN = 0.02


SERIES_KEY = "pot"  # the released glasses' per-atom potential energy: the axis of their relaxation series


def composition_inside(own, seen) -> bool:
    """Whether species fractions ``own`` lie within ``COMPOSITION_MARGIN`` of the range of ``seen``
    (one row of fractions per glass)."""
    seen = np.asarray(seen, dtype=float)
    return bool(np.all(own >= seen.min(axis=0) - COMPOSITION_MARGIN) and np.all(own <= seen.max(axis=0) + COMPOSITION_MARGIN))


def formula(species, fractions) -> str:
    """``Cu64Zr36`` for species ("Cu", "Zr") at fractions (0.64, 0.36)."""
    return "".join(f"{s}{100 * x:.0f}" for s, x in zip(species, fractions))


class LevelError(ValueError):
    """A level line that cannot be fitted, or a glass it cannot place (one line, names the file)."""


NEEDS_LABELS = "the level line needs the labels of the glasses the fit saw"


def no_array(source, key: str, arrays) -> LevelError:
    """The error for a glass (a file, or a checkpoint's summary of one) without the per-atom ``key``."""
    has = ", ".join(sorted(arrays)) or "none"
    return LevelError(f"{source}: no per-atom array {key!r} to set the level from (per-atom arrays: {has}); "
                      f"--level {EAM} computes energies with the md extra")


def mean_level(glass: Glass, key: str) -> float:
    """The glass's mean per-atom ``key`` (``eam``: its EAM energy per atom, eV)."""
    if key == EAM:
        try:
            with Engine(glass) as engine:
                return float(engine.energies().mean())
        except (MDUnavailable, MDError, ValueError) as e:
            raise LevelError(f"--level eam: {e}") from None
    if key not in glass.extras:
        raise no_array(glass.source, key, glass.extras)
    values = np.asarray(glass.extras[key], dtype=float)
    if values.shape != (len(glass),):  # a pickle's arrays are not checked against the atoms when read
        raise LevelError(f"{glass.source}: per-atom array {key!r} has shape {values.shape}, not one value for each of its {len(glass)} atoms")
    if not np.isfinite(values).all():
        raise LevelError(f"{glass.source}: per-atom array {key!r} has {int((~np.isfinite(values)).sum())} values that are not finite")
    return float(values.mean())


def fit_line(points: dict[str, tuple[float, float]], key: str) -> tuple[float, float]:
    """(slope, intercept) of mean EB against mean ``key`` through ``points`` (glass -> (mean key, mean EB))."""
    levels = [p[0] for p in points.values()]
    if len(points) < 2 or np.ptp(levels) <= 1e-9:
        raise LevelError(f"--level {key}: a line needs glasses at two levels at least; the fit saw "
                         f"{', '.join(f'{n} ({v[0]:.4f})' for n, v in points.items())}")
    slope, intercept = np.polyfit(levels, [p[1] for p in points.values()], 1)
    return float(slope), float(intercept)


@dataclass(frozen=True)
class LevelLine:
    """mean EB = intercept + slope · mean ``key``, fitted over ``glasses`` (name -> (mean key, mean EB,
    species fractions))."""

    key: str
    intercept: float
    slope: float
    species: tuple[str, ...]
    glasses: dict[str, tuple[float, float, tuple[float, ...]]]

    @classmethod
    def fit(cls, glasses: list[Glass], key: str, species: list[str]) -> LevelLine:
        return cls.through(cls._points(glasses, key, species), key, species)

    @classmethod
    def through(cls, points: dict[str, tuple[float, float, tuple[float, ...]]], key: str, species: list[str]) -> LevelLine:
        """The line through ``points`` (glass -> (mean ``key``, mean EB, species fractions))."""
        slope, intercept = fit_line({n: p[:2] for n, p in points.items()}, key)
        return cls(key, intercept, slope, tuple(species), points)

    @staticmethod
    def _points(glasses: list[Glass], key: str, species: list[str]) -> dict[str, tuple[float, float, tuple[float, ...]]]:
        points = {}
        for g, name in zip(glasses, glass_names([Path(g.source) for g in glasses])):
            if g.labels is None:
                raise LevelError(f"{g.source}: {NEEDS_LABELS}")
            points[name] = (mean_level(g, key), float(np.mean(g.labels)), tuple(g.fractions(species).tolist()))
        return points

    @staticmethod
    def _stored_point(name: str, summary: dict, key: str) -> tuple[float, float, tuple[float, ...]]:
        """A point from a glass's summary in a checkpoint (:meth:`mgglass.data.Glass.summary`)."""
        if summary.get("mean_label") is None:
            raise LevelError(f"{name}: {NEEDS_LABELS}")
        if key not in summary["means"]:
            raise no_array(name, key, summary["means"])
        return summary["means"][key], summary["mean_label"], tuple(summary["fractions"])

    @classmethod
    def of_fits(cls, settings: list[dict], key: str) -> LevelLine:
        """The line over every glass the fits saw (training and validation; for an ensemble, any member's).
        A checkpoint keeps a summary of those glasses (``_glass_summaries`` in its settings), so the
        line needs no glass file unless the key is ``eam`` or the checkpoint predates the summaries;
        then the glasses are read from the data settings the checkpoint holds."""
        species = list(settings[0].get("species") or ("Cu", "Zr"))
        points: dict[str, tuple[float, float, tuple[float, ...]]] = {}
        files: dict[str, tuple[Path, str]] = {}
        try:
            for hp in settings:
                stored = hp.get("_glass_summaries")
                if stored and key != EAM:
                    for name, summary in stored.items():
                        point = cls._stored_point(name, summary, key)
                        if points.setdefault(name, point) != point:  # two glasses of one name (members' own data roots)
                            points[f"{name} ({len(points)})"] = point
                    continue
                try:
                    data = GlassDataModule(**{k: v for k, v in hp.items() if not k.startswith("_")})
                    paths = data.files("train") + data.files("val")
                except Exception as e:  # noqa: BLE001 - missing files, failed downloads, foreign settings
                    raise LevelError(f"their files cannot be read ({type(e).__name__}: {e})") from None
                for path in paths:
                    files.setdefault(str(path), (path, hp.get("label_key", "eb")))
            read = cls._points([read_glass(p, label_key=lk, species=species) for p, lk in files.values()], key, species)
            for name, point in read.items():
                points.setdefault(name, point)
            return cls.through(points, key, species)
        except (LevelError, GlassDataError) as e:
            raise LevelError(f"--level {key}, over the glasses the fit saw: {e}") from None

    def __call__(self, level: float) -> float:
        return self.intercept + self.slope * level

    @property
    def level_range(self) -> tuple[float, float]:
        levels = [p[0] for p in self.glasses.values()]
        return min(levels), max(levels)

    def level_of(self, glass: Glass) -> float:
        """The glass's mean ``key``, once its composition is known to be the line's."""
        own = glass.fractions(list(self.species))
        seen = np.array([p[2] for p in self.glasses.values()])
        if not composition_inside(own, seen):
            raise LevelError(f"{glass.source}: composition {formula(self.species, own)} is not that of the glasses the level "
                             f"line was fitted on ({formula(self.species, seen.mean(axis=0))}); the line holds for one composition")
        return mean_level(glass, self.key)

    def shift(self, pred: np.ndarray, level: float) -> tuple[np.ndarray, dict]:
        """``pred`` moved so that its mean is the line's at ``level``, and what was done."""
        target = self(level)
        lo, hi = self.level_range
        info = {"level": level, "network_mean_ev": float(pred.mean()), "line_mean_ev": target,
                "shift_ev": target - float(pred.mean()), "inside_fitted_range": bool(lo <= level <= hi)}
        return pred + info["shift_ev"], info

    def describe(self) -> dict:
        lo, hi = self.level_range
        return {"key": self.key, "intercept_ev": self.intercept, "slope": self.slope, "glasses": sorted(self.glasses),
                "level_range": [lo, hi]}


@dataclass(frozen=True)
class Series:
    """The glasses a fit saw as the range of their mean per-atom ``key`` and of their species fractions:
    where its accuracy was measured. Beyond that range held-out glasses lost r and had their level pulled
    toward the series' middle (docs/notes/new-glasses.md), so a glass outside it is worth a word."""

    key: str
    lo: float
    hi: float
    species: tuple[str, ...]
    fractions: tuple[tuple[float, ...], tuple[float, ...]]  # lowest and highest fraction of each species

    @classmethod
    def through(cls, points, key: str, species) -> Series:
        """The series of ``points`` (glass -> (mean ``key``, species fractions))."""
        levels = [p[0] for p in points.values()]
        seen = np.array([p[1] for p in points.values()])
        return cls(key, min(levels), max(levels), tuple(species), (tuple(seen.min(axis=0)), tuple(seen.max(axis=0))))

    @classmethod
    def of_line(cls, line: LevelLine) -> Series:
        return cls.through({n: (p[0], p[2]) for n, p in line.glasses.items()}, line.key, line.species)

    @classmethod
    def of_fits(cls, settings: list[dict], key: str = SERIES_KEY) -> Series | None:
        """From the glass summaries the checkpoints keep; None when any glass lacks ``key`` (or a checkpoint
        predates the summaries): then nothing is said."""
        points = {}
        for i, hp in enumerate(settings):
            stored = hp.get("_glass_summaries")
            if not stored:
                return None
            for name, summary in stored.items():
                if key not in summary["means"]:
                    return None
                points[(i, name)] = (summary["means"][key], summary["fractions"])
        return cls.through(points, key, settings[0].get("species") or ("Cu", "Zr"))

    def place(self, glass: Glass, level: float | None = None) -> dict | None:
        """Where ``glass`` lies: its mean ``key`` (``level`` when already known) and composition, and whether
        each is inside the series; None when the glass has no ``key`` to place it by."""
        if level is None:
            if self.key not in glass.extras:  # also keeps --level eam's LAMMPS run out: its level comes from the line
                return None
            try:
                level = mean_level(glass, self.key)
            except LevelError:  # not one finite value per atom
                return None
        own = glass.fractions(list(self.species))
        return {"mean": level, "inside": bool(self.lo <= level <= self.hi), "composition": formula(self.species, own),
                "composition_inside": composition_inside(own, self.fractions)}

    def notice(self, source, place: dict) -> str | None:
        """One line for a glass outside the series (None inside it)."""
        out = []
        if not place["inside"]:
            out.append(f"mean {self.key} {place['mean']:.4f} is outside the range of the glasses the fit saw "
                       f"({self.lo:.4f} to {self.hi:.4f})")
        if not place["composition_inside"]:
            middle = (np.array(self.fractions[0]) + np.array(self.fractions[1])) / 2
            out.append(f"composition {place['composition']} is not that of the glasses the fit saw "
                       f"({formula(self.species, middle)})")
        if not out:
            return None
        return (f"{source}: {' and '.join(out)}: its barriers are extrapolated, and held-out glasses at the ends of the "
                f"series were predicted less well, their level pulled toward its middle (docs/guide/predict.md#outside)")

    def describe(self) -> dict:
        return {"key": self.key, "range": [self.lo, self.hi], "species": list(self.species),
                "fractions": [list(f) for f in self.fractions]}
