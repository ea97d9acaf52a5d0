"""What a cross-validation reports: per held-out glass r, R², MAE, Spearman and the predicted
against the labelled mean, beside the glass's mean potential energy, and R² once the glass's
predictions sit on the level line of the glasses its fold saw (what ``mgglass.predict --level`` does);
the mean and the worst fold; ensembles of a fold's seeds; the table (CSV, Markdown) and the plot."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from mgglass.metrics import pooled_metrics
from mgglass.task import score_members

COLUMNS = ("model", "held_out", "val", "seed", "atoms", "level", "label_mean", "pred_mean", "line_mean", "r", "r2", "r2_level", "mae",
           "spearman")
ENSEMBLE_COLUMNS = ("members", "best_member_r", "spearman_std_abs_error", "top10_overlap", "within_1std", "within_2std")


def fold_row(model: str, held_out: str, val: str, seed: str, y: np.ndarray, p: np.ndarray, level: float,
             line_mean: float = float("nan")) -> dict:
    """One table row: the metrics of predictions ``p`` against labels ``y`` on one held-out glass;
    ``line_mean``: the glass's mean EB on its fold's level line (nan: none), for ``r2_level``."""
    m = pooled_metrics(y, p)
    r2_level = pooled_metrics(y, p - np.mean(p) + line_mean)["r2"] if math.isfinite(line_mean) else float("nan")
    return {"model": model, "held_out": held_out, "val": val, "seed": seed, "atoms": len(y), "level": level,
            "label_mean": float(np.mean(y)), "pred_mean": float(np.mean(p)), "line_mean": line_mean, "r": m["r"], "r2": m["r2"],
            "r2_level": r2_level, "mae": m["mae"], "spearman": m["spearman"]}


def ensemble_row(model: str, held_out: str, val: str, y: np.ndarray, members: list[np.ndarray], level: float,
                 line_mean: float = float("nan")) -> dict:
    """The row of the members' mean on one held-out glass, with its best member and how the members'
    spread ranks and covers the errors."""
    mean, _, scores = score_members(y, members)
    row = fold_row(model, held_out, val, "ensemble", y, mean, level, line_mean)
    row.update(members=len(members), best_member_r=scores["best_member_r"], **scores["uncertainty"])
    return row


def aggregate(rows: list[dict], model: str) -> dict | None:
    """Mean and worst fold of ``model``'s rows (seeds averaged within a fold first)."""
    folds: dict[str, list[dict]] = {}
    for r in rows:
        if r["model"] == model and r["seed"] != "ensemble":
            folds.setdefault(r["held_out"], []).append(r)
    if not folds:
        return None

    def per_fold(key: str) -> dict[str, float]:
        return {h: float(np.mean([r[key] for r in seeds])) for h, seeds in folds.items()}

    means = per_fold("r")
    worst = min(means, key=means.get)
    return {"model": model, "folds": len(means), "r_mean": float(np.mean(list(means.values()))), "r_worst": means[worst],
            "worst_fold": worst, "r2_mean": float(np.mean(list(per_fold("r2").values()))),
            "r2_level_mean": float(np.mean(list(per_fold("r2_level").values())))}  # nan unless every fold has a line


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(COLUMNS) + [k for k in ENSEMBLE_COLUMNS if any(k in r for r in rows)]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _f(v, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def markdown(rows: list[dict], summaries: list[dict], title: str, level_key: str = "pot") -> str:
    """The table a user reads: one line per held-out glass and model (seeds and ensembles as rows)."""
    lines = [f"# {title}", "",
             "Leave-one-glass-out: each row is a model trained without the held-out glass (validation glasses",
             "in the `val` column, never the held-out one); r, R², MAE and Spearman are over that glass's atoms.",
             "Pearson r is per glass here, not pooled over several glasses as in the paper's test number.", "",
             f"R² with `--level`: the glass's predictions moved, all by one shift, onto the line mean EB = a + b · mean {level_key}",
             "through the glasses its fold saw (training and validation), as `mgglass.predict --level` moves a new glass's.", "",
             (f"| model | held out | mean {level_key} | val | seed | r | R² | R² with `--level` | MAE (eV) | Spearman | label mean | "
              "predicted mean | line's mean |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["level"] if math.isfinite(r["level"]) else 0, r["held_out"], str(r["seed"]))):
        lines.append(f"| {r['model']} | {r['held_out']} | {_f(r['level'], 4)} | {r['val']} | {r['seed']} | **{_f(r['r'])}** | "
                     f"{_f(r['r2'])} | {_f(r['r2_level'])} | {_f(r['mae'])} | {_f(r['spearman'])} | {_f(r['label_mean'])} | "
                     f"{_f(r['pred_mean'])} | {_f(r['line_mean'])} |")
    lines += ["", "| model | folds | mean r | worst fold | mean R² | mean R² with `--level` |", "|---|---|---|---|---|---|"]
    for s in summaries:
        lines.append(f"| {s['model']} | {s['folds']} | **{_f(s['r_mean'])}** | {_f(s['r_worst'])} ({s['worst_fold']}) | {_f(s['r2_mean'])} | "
                     f"{_f(s['r2_level_mean'])} |")
    ens = [r for r in rows if "members" in r]
    if ens:
        lines += ["", ("Ensembles (the mean of a fold's seeds, or of a fold's fit and the `--with` cross-validation's fit of that fold "
                       "and seed; `eb_std` is the members' spread):"), "",
                  "| model | held out | seed | members | r | best member r | Spearman(std, abs error) | top-10% overlap | within ±1σ | within ±2σ |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in ens:
            lines.append(f"| {r['model']} | {r['held_out']} | {r['seed']} | {r['members']} | **{_f(r['r'])}** | {_f(r['best_member_r'])} | "
                         f"{_f(r['spearman_std_abs_error'])} | {_f(r['top10_overlap'], 2)} | {_f(r['within_1std'], 2)} | {_f(r['within_2std'], 2)} |")
    return "\n".join(lines) + "\n"


def plot(path: Path, rows: list[dict], title: str, level_key: str = "pot") -> None:
    """r per held-out glass (left) and its predicted against labelled mean (right), against the
    glass's mean level, one series per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    models = list(dict.fromkeys(r["model"] for r in rows))
    for i, model in enumerate(models):
        mine = [r for r in rows if r["model"] == model and r["seed"] != "ensemble"]
        folds = sorted({r["held_out"] for r in mine}, key=lambda h: next(r["level"] for r in mine if r["held_out"] == h))
        x = np.array([next(r["level"] for r in mine if r["held_out"] == h) for h in folds])
        if not np.all(np.isfinite(x)):
            x = np.arange(len(folds), dtype=float)
        r = np.array([np.mean([q["r"] for q in mine if q["held_out"] == h]) for h in folds])
        pm = np.array([np.mean([q["pred_mean"] for q in mine if q["held_out"] == h]) for h in folds])
        lm = np.array([next(q["label_mean"] for q in mine if q["held_out"] == h) for h in folds])
        color = f"C{i}"
        ax1.plot(x, r, "o-", color=color, label=model)
        for xi, ri, h in zip(x, r, folds):
            ax1.annotate(h, (xi, ri), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax2.plot(x, pm, "o--", color=color, label=f"{model}: predicted")
        if i == 0:
            ax2.plot(x, lm, "ks-", label="label")
    ax1.set_xlabel(f"held-out glass: mean {level_key} (eV/atom)")
    ax1.set_ylabel("Pearson r on the held-out glass")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.set_xlabel(f"held-out glass: mean {level_key} (eV/atom)")
    ax2.set_ylabel("mean EB (eV)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
