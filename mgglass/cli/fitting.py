"""The fit as a library function: :func:`run` is ``python -m mgglass.fit`` with callbacks and tags
added, returning a :class:`FitResult` (the hook sweeps, cross-validations and benchmarks wrap).

Trains the configured model (validation picks the best epoch and stops early), then evaluates the
test split once on the best-validation checkpoint. One MLflow run per fit (see
:mod:`mgglass.tracking`); ``--ckpt_path last`` resumes a killed fit from its run folder's
``last.ckpt`` into the same MLflow run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from mgglass.cli.config import ConfigError, build, check_data, fail
from mgglass.data import GlassDataError
from mgglass.tracking import MLflowTracker, flatten
from mgglass.workers import RESULT_FILE, watch_parent, write_result

PROG = "mgglass.fit"


@dataclass
class FitResult:
    """What :func:`run` gives back to a caller that wraps a fit (a sweep trial, a benchmark)."""

    code: int  # the exit code of ``python -m mgglass.fit``
    ckpt_dir: Path | None = None  # the run folder: checkpoints, config.yaml, result.json
    run_id: str | None = None  # the MLflow run, when tracking is on


def _global_rank() -> int:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def resolve_ckpt(ckpt_path: str | None, ckpt_dir: Path) -> str | None:
    """'last' -> the run folder's last.ckpt (None, i.e. a fresh fit, when there is none)."""
    if ckpt_path in (None, ""):
        return None
    if ckpt_path == "last":
        last = ckpt_dir / "last.ckpt"
        if last.is_file():
            return str(last)
        print(f"{PROG}: no {last} yet; starting a fresh fit", file=sys.stderr, flush=True)
        return None
    if not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path: {ckpt_path}: no such checkpoint")
    return ckpt_path


def move_aside(ckpt_dir: Path) -> None:
    """A fresh fit starts in an empty run folder; an old one is kept as <dir>-<time>."""
    if ckpt_dir.is_dir() and any(ckpt_dir.iterdir()):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(ckpt_dir.stat().st_mtime))
        dest = ckpt_dir.with_name(f"{ckpt_dir.name}-{stamp}")
        n = 1
        while dest.exists():
            dest = ckpt_dir.with_name(f"{ckpt_dir.name}-{stamp}.{n}")
            n += 1
        ckpt_dir.rename(dest)


# Command-line settings that name, seed or store a run rather than change what it trains.
BOOKKEEPING = ("config", "seed_everything", "ckpt_path", "tracking.", "checkpoint.")


def config_overrides(argv: list[str]) -> str:
    """The command line's settings beyond its config files and bookkeeping, as space-separated
    ``key=value``: with the config files, what tells a run apart (the report's config column)."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("--"):
            continue
        key, eq, value = arg[2:].partition("=")
        if not eq and i < len(argv) and not argv[i].startswith("--"):
            value, i = argv[i], i + 1
        if not key.startswith(BOOKKEEPING):
            out.append(f"{key}={value}")
    return " ".join(out)


def run_tags(cfg, data_hash: str, argv: list[str] = ()) -> dict[str, str]:
    net = cfg.model.net
    class_path = net.class_path if hasattr(net, "class_path") else str(net)
    return {
        "model": class_path.rsplit(".", 1)[-1],
        "model_class": class_path,
        "data_hash": data_hash,
        "seed": str(cfg.seed_everything),
        "config_files": ",".join(str(p) for p in (cfg.get("config") or [])),
        "overrides": config_overrides(list(argv)),
        "data_files": f"{cfg.data.root or 'official'}: train {','.join(map(str, cfg.data.train))}; val {','.join(map(str, cfg.data.val))}; test {','.join(map(str, cfg.data.test))}",
    }


def run(argv: list[str], callbacks=(), tags: dict[str, str] | None = None) -> FitResult:
    """``python -m mgglass.fit`` with ``argv``, plus ``callbacks`` on the Trainer and ``tags`` on the
    MLflow run: the hook a sweep trial or a benchmark wraps the fit with. A callback whose ``pruned``
    is true when training ends marks the fit PRUNED (no test); a callback's ``final_tags()`` are
    added to the run when it finishes."""
    watch_parent()  # a fit started by a sweep or a cross-validation ends when its parent dies
    try:
        cli = build(argv, extra_callbacks=list(callbacks))
        cfg, trainer, task, dm = cli.config, cli.trainer, cli.model, cli.datamodule
        # Rank 0 checks (and generates/downloads) the files; other ranks get them through
        # Lightning's prepare_data + barrier, so concurrent ranks never write the same file.
        data_hash = ""
        if _global_rank() == 0:
            check_data(dm)
            data_hash = dm.content_hash()
        ckpt_dir = Path(cfg.checkpoint.dirpath)
        ckpt_path = resolve_ckpt(cfg.ckpt_path, ckpt_dir)
    except ConfigError as e:
        return FitResult(fail(PROG, str(e)))
    except GlassDataError as e:
        return FitResult(fail(PROG, str(e), 1))

    config_yaml = cli.parser.dump(cfg, skip_none=False, skip_validation=True)
    if _global_rank() == 0:
        if ckpt_path is None:
            move_aside(ckpt_dir)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (ckpt_dir / RESULT_FILE).unlink(missing_ok=True)  # written again when this fit finishes
        (ckpt_dir / "config.yaml").write_text(config_yaml)
    resume = ckpt_path is not None and Path(ckpt_path).resolve().parent == ckpt_dir.resolve()
    tracker = None
    if cfg.tracking.enabled:
        params = flatten({k: v for k, v in yaml.safe_load(config_yaml).items() if k not in ("config",)})
        tracker = MLflowTracker(
            cfg.tracking,
            ckpt_dir,
            resume=resume,
            params=params,
            config_yaml=config_yaml,
            tags={**run_tags(cfg, data_hash, argv), **(tags or {})},
            species=list(cfg.data.species),
        )
        trainer.callbacks.append(tracker)
    try:
        trainer.fit(task, datamodule=dm, ckpt_path=ckpt_path)
        if trainer.interrupted:
            return FitResult(130, ckpt_dir)
        ckpt = trainer.checkpoint_callback
        # Read both before testing: restoring the best checkpoint also restores the callback's state.
        best = ckpt.best_model_path if ckpt is not None else ""
        last = ckpt.last_model_path if ckpt is not None else ""
        score = ckpt.best_model_score if ckpt is not None else None
        epochs = len(task.history)  # before the test loads the best checkpoint, whose history is shorter
        pruned = any(getattr(cb, "pruned", False) for cb in callbacks)
        if not pruned:  # a pruned trial's model is not worth a test
            trainer.test(task, datamodule=dm, ckpt_path=best or None, verbose=trainer.is_global_zero)
    except GlassDataError as e:
        return FitResult(fail(PROG, str(e), 1), ckpt_dir)
    if trainer.is_global_zero:  # what a sweep or cross-validation reads back (mgglass.workers)
        write_result(
            ckpt_dir,
            state="PRUNED" if pruned else "COMPLETE",
            monitor=ckpt.monitor if ckpt is not None else None,
            value=None if score is None else float(score),
            best_model_path=best,
            last_model_path=last,
            epochs=epochs,
            run_id=tracker.run_id if tracker is not None else None,
            test=task.last_metrics.get("test", {}) if not pruned else {},
        )
    if tracker is not None:
        extra = {k: v for cb in callbacks if hasattr(cb, "final_tags") for k, v in cb.final_tags().items()}
        tracker.finish([best, last], tags=extra)
    return FitResult(0, ckpt_dir, tracker.run_id if tracker is not None else None)
