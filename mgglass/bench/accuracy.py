"""Time-to-accuracy benchmark: a normal fit, with test0 evaluated after every epoch for the curve only.

    python -m mgglass.bench accuracy [--config experiments/symgnn.yaml] [--threshold 0.75] [fit overrides ...]

The fit is exactly ``python -m mgglass.fit`` (same config layering, selection on validation, MLflow
run, final test on the best-validation checkpoint). After each epoch's checkpoint, the benchmark
also predicts the test glasses and records ``(epoch, wall time, val r, test r)``; test data never
select or stop anything (evaluation draws no random numbers from the training stream, so the fit
takes the same steps as without the benchmark). From the record it reports when the
*validation-selected* model — the best-``val_r`` epoch so far, the one a fit stopped then would
test — first has test r above ``--threshold``. Wall time counts training, validation and
checkpointing, not the benchmark's own test evaluations.

Writes ``accuracy.json`` and ``accuracy.png`` (val r, test r and the selected model's test r against
wall time) into the run folder, logs both to the fit's MLflow run, and prints a JSON summary line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mgglass.callbacks import AfterCheckpoint
from mgglass.cli import fitting
from mgglass.compat import averaged_module
from mgglass.inference import predict_pooled
from mgglass.metrics import pooled_metrics
from mgglass.tracking import read_run_file


class TestCurve(AfterCheckpoint):
    """Records test r after every epoch (rank 0; test glasses are evaluated whole, in eval mode)."""

    def __init__(self):
        self.rows: list[dict] = []
        self._start = 0.0
        self._excluded = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self._start, self._excluded = time.perf_counter(), 0.0

    @torch.no_grad()
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        t0 = time.perf_counter()
        row = pl_module.history.get(int(trainer.current_epoch), {})
        dm = trainer.datamodule
        if not trainer.is_global_zero or "val_r" not in row or dm is None:
            return
        stats = pooled_metrics(*predict_pooled(validated_module(trainer, pl_module), dm.graphs["test"]))
        self.rows.append({
            "epoch": int(trainer.current_epoch),
            "wall_s": t0 - self._start - self._excluded,
            "val_r": float(row["val_r"]),
            "val_mae": float(row.get("val_mae", float("nan"))),
            "test_r": stats["r"],
            "test_mae": stats["mae"],
        })
        self._excluded += time.perf_counter() - t0


def validated_module(trainer, pl_module):
    """The weights validation just scored: with weight averaging (EMA), the averaged copy (its batch-norm
    statistics recalibrated during that validation), else the module itself."""
    from lightning.pytorch.callbacks import WeightAveraging

    for cb in trainer.callbacks:
        averaged = averaged_module(cb) if isinstance(cb, WeightAveraging) else None
        if averaged is not None:
            return averaged
    return pl_module


def selected_curve(rows: list[dict]) -> list[dict]:
    """Adds ``selected_epoch`` and ``selected_test_r`` (test r of the best-val_r epoch so far) to rows."""
    best = None
    out = []
    for row in rows:
        if best is None or row["val_r"] > best["val_r"]:
            best = row
        out.append({**row, "selected_epoch": best["epoch"], "selected_test_r": best["test_r"]})
    return out


def summary(rows: list[dict], threshold: float) -> dict:
    rows = selected_curve(rows)
    hit = next((r for r in rows if r["selected_test_r"] > threshold), None)
    final = rows[-1] if rows else {}
    return {
        "threshold": threshold,
        "reached": hit is not None,
        "wall_s_to_threshold": hit["wall_s"] if hit else None,
        "epochs_to_threshold": hit["epoch"] + 1 if hit else None,
        "epochs": len(rows),
        "wall_s": final.get("wall_s"),
        "selected_epoch": final.get("selected_epoch"),
        "selected_val_r": max((r["val_r"] for r in rows), default=None),
        "selected_test_r": final.get("selected_test_r"),
    }


def plot(path: Path, rows: list[dict], threshold: float, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = selected_curve(rows)
    t = np.array([r["wall_s"] for r in rows]) / 60
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(t, [r["val_r"] for r in rows], label="validation r (train6)", lw=1)
    ax.plot(t, [r["test_r"] for r in rows], label="test r (test0), every epoch", lw=1, alpha=0.6)
    ax.plot(t, [r["selected_test_r"] for r in rows], label="test r of the validation-selected epoch", lw=2)
    ax.axhline(threshold, color="k", ls=":", lw=0.8)
    ax.set_xlabel("wall time (min)")
    ax.set_ylabel("Pearson r")
    ax.set_ylim(min(0.0, min((r["val_r"] for r in rows), default=0)), 1.0)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="mgglass.bench accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threshold", type=float, default=0.75)
    args, fit_args = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if not any(a == "--config" or a.startswith("--config=") for a in fit_args):
        fit_args = ["--config", "experiments/symgnn.yaml", *fit_args]
    if not any(a.startswith("--tracking.run_name") for a in fit_args):
        fit_args.append("--tracking.run_name=bench-accuracy")
    curve = TestCurve()
    fitted = fitting.run(fit_args, callbacks=[curve])
    if fitted.code != 0 or not curve.rows:
        return fitted.code or 1
    out = fitted.ckpt_dir
    result = {**summary(curve.rows, args.threshold), "fit_args": fit_args}
    (out / "accuracy.json").write_text(json.dumps({"summary": result, "rows": selected_curve(curve.rows)}, indent=1))
    title = " ".join(a for a in fit_args if not a.startswith("--tracking"))
    plot(out / "accuracy.png", curve.rows, args.threshold, title)
    run = read_run_file(out)
    if run:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=run["tracking_uri"])
        for name in ("accuracy.json", "accuracy.png"):
            client.log_artifact(run["run_id"], str(out / name), "bench")
    print(json.dumps({**result, "out": str(out)}), flush=True)
    return 0
