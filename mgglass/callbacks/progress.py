"""Progress output of fits: a bar on a terminal, one plain line per epoch elsewhere (CI, files, SLURM)."""

from __future__ import annotations

import os
import sys

from mgglass.callbacks.after_checkpoint import AfterCheckpoint


class PlainProgress(AfterCheckpoint):
    """One line per epoch on stdout (rank 0), for logs that are not a terminal (CI, files, SLURM)."""

    KEYS = ("train_loss", "val_loss", "val_r", "val_mae", "val_rmse", "lr")

    def __init__(self):
        self._printed: set[int] = set()

    def _emit(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        for epoch in sorted(pl_module.history):
            if epoch in self._printed:
                continue
            row = pl_module.history[epoch]
            parts = [f"epoch {epoch:3d}"] + [f"{k} {row[k]:.4g}" for k in self.KEYS if k in row]
            parts.append(f"{row.get('epoch_time_s', 0.0):.1f}s")
            print("  ".join(parts), flush=True)
            self._printed.add(epoch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._emit(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._emit(trainer, pl_module)

    def on_fit_start(self, trainer, pl_module) -> None:
        # History restored from a checkpoint was printed by the previous process.
        self._printed.update(pl_module.history)


def want_progress_bar() -> bool:
    return sys.stdout.isatty() and not os.environ.get("CI")
