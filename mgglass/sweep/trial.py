"""The fit's side of a sweep trial: ``python -m mgglass.sweep.trial`` takes the arguments of
``python -m mgglass.fit`` and runs that fit (:func:`mgglass.cli.fitting.run`) with a reporter, its
environment naming the study and trial (``MGGLASS_SWEEP_TRIAL``, set by :mod:`mgglass.sweep.runner`).

Rank 0 reports the objective's validation value after every epoch and asks the pruner; the decision
is broadcast so every DDP rank stops together (Optuna's Lightning callback cannot do that: under
``strategy=ddp`` each rank would sample a trial of its own). The fit then writes its
``result.json`` beside its checkpoints for the sweep worker (:mod:`mgglass.workers`), and tags its
MLflow run as a child of the sweep's.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field

from mgglass.callbacks import AfterCheckpoint
from mgglass.cli import fitting
from mgglass.compat import trial_by_id
from mgglass.sweep.spec import build_pruner, open_storage

ENV = "MGGLASS_SWEEP_TRIAL"


@dataclass
class TrialContext:
    storage: str
    study: str
    trial_id: int
    number: int
    metric: str = "val_r"
    direction: str = "maximize"
    pruner: dict = field(default_factory=lambda: {"name": "none"})
    parent_run_id: str | None = None
    sweep_pid: int | None = None

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> TrialContext | None:
        raw = os.environ.get(ENV)
        return cls(**json.loads(raw)) if raw else None

    def tags(self) -> dict[str, str]:
        tags = {"optuna_study": self.study, "optuna_trial": str(self.number)}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id  # nests the run under the sweep's in the UI
        return tags


class OptunaReporter(AfterCheckpoint):
    """Report the objective's value each epoch (rank 0) and stop every rank when the pruner says so."""

    def __init__(self, ctx: TrialContext):
        self.ctx = ctx
        self.pruned = False
        self._trial = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self._trial is not None or not trainer.is_global_zero:
            return
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(
            study_name=self.ctx.study, storage=open_storage(self.ctx.storage, heartbeat=False), pruner=build_pruner(self.ctx.pruner)
        )
        self._trial = trial_by_id(study, self.ctx.trial_id)

    def final_tags(self) -> dict[str, str]:
        return {"optuna_state": "PRUNED" if self.pruned else "COMPLETE"}

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        prune = False
        if trainer.is_global_zero and self._trial is not None:
            epoch = int(trainer.current_epoch)
            value = pl_module.history.get(epoch, {}).get(self.ctx.metric)
            if value is not None and math.isfinite(value):
                self._trial.report(float(value), epoch)
                prune = bool(self._trial.should_prune())
        if trainer.world_size > 1:
            prune = bool(trainer.strategy.broadcast(prune, src=0))
        if prune:
            self.pruned = True
            trainer.should_stop = True


def main(argv=None) -> int:
    ctx = TrialContext.from_env()
    if ctx is None:
        print(f"mgglass.sweep.trial: error: no {ENV} in the environment (trials are started by python -m mgglass.sweep)",
              file=sys.stderr, flush=True)
        return 2
    return fitting.run(list(sys.argv[1:] if argv is None else argv), callbacks=[OptunaReporter(ctx)], tags=ctx.tags()).code


if __name__ == "__main__":
    sys.exit(main())
