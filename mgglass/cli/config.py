"""The LightningCLI shared by ``python -m mgglass.fit``, ``mgglass.validate`` and ``mgglass.test``.

Configs are YAML files layered on ``experiments/base.yaml`` (loaded first, as defaults), then any
``--config FILE`` in order, then dotted overrides (``--trainer.max_epochs=5``). Sections:
``model`` (:class:`mgglass.task.EBTask`: ``net`` class path + init args, optimizer, scheduler),
``data`` (:class:`mgglass.data.GlassDataModule`), ``trainer``, ``checkpoint`` (ModelCheckpoint),
``early_stopping`` (EarlyStopping), ``recalibrate_bn`` (:class:`mgglass.callbacks.RecalibrateBatchNorm`), ``tracking`` (:class:`mgglass.tracking.TrackingConfig`),
``seed_everything`` and ``ckpt_path``.

Errors in the config (unknown model, misspelled key, bad value, missing data file) are printed as
one line on stderr and exit non-zero before training; set ``MGGLASS_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import json
import os
import re
import sys
from itertools import pairwise
from pathlib import Path

from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from mgglass.callbacks import ModelCheckpoint, PlainProgress, RecalibrateBatchNorm
from mgglass.callbacks.progress import want_progress_bar
from mgglass.data import GlassDataError, GlassDataModule
from mgglass.data.datamodule import splits_for
from mgglass.runtime import keep_freed_memory, quiet_warnings
from mgglass.task import EBTask
from mgglass.tracking import TrackingConfig

BASE_CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "base.yaml"


class ConfigError(Exception):
    """A config problem, reported as one line."""


FLOAT32 = ("None", "32", "32-true")  # trainer.precision values the models support


class MGCLI(LightningCLI):
    """LightningCLI without subcommands (``run=False``): the entry points drive the Trainer."""

    def __init__(self, args=None, progress: bool | None = None, extra_callbacks=()):
        self._progress = want_progress_bar() if progress is None else progress
        # LightningCLI appends trainer_defaults' callbacks after the config's and the checkpoint's, so
        # callbacks that report a checkpointed epoch (AfterCheckpoint) come after the ModelCheckpoint.
        callbacks = [*extra_callbacks, *([] if self._progress else [PlainProgress()])]
        defaults = [str(BASE_CONFIG)] if BASE_CONFIG.is_file() else []
        super().__init__(
            EBTask,
            GlassDataModule,
            run=False,
            args=args,
            save_config_callback=None,  # the tracker logs each run's own config.yaml
            seed_everything_default=0,
            parser_kwargs={"exit_on_error": False, "allow_abbrev": False, "default_config_files": defaults},
            trainer_defaults={"use_distributed_sampler": False, "logger": False, "callbacks": callbacks},
            auto_configure_optimizers=False,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.add_lightning_class_args(RecalibrateBatchNorm, "recalibrate_bn")
        # The checkpoint/early-stopping entries of experiments/base.yaml, for installs without that
        # folder (a wheel): keep them equal to base.yaml, which docs/configuration.md documents.
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_r",
                "checkpoint.mode": "max",
                "checkpoint.save_top_k": 1,
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch:03d}",
                "checkpoint.save_on_train_epoch_end": True,
                "early_stopping.monitor": "val_r",
                "early_stopping.mode": "max",
                "early_stopping.patience": 30,
            }
        )
        # One list of auxiliary targets: the data reads them, the task sizes its head and loss by them.
        parser.link_arguments("data.aux_targets", "model.aux_targets")
        parser.add_class_arguments(TrackingConfig, "tracking")
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="fit: resume from this checkpoint ('last': the run folder's last.ckpt); validate/test: weights to use",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        """Parse, then start the net afresh where a later source names a different class: jsonargparse
        keeps every earlier init_arg the new class accepts (``--config symgnn.yaml --config
        egat_len.yaml`` gave EGATLength the recipe's sampling settings), so those are reset to the new
        class's defaults by a second parse, which also makes ``--print_config`` show what runs."""
        args = list(sys.argv[1:] if args is None else args)
        printing = [a for a in args if a == "--print_config" or a.startswith("--print_config=")]
        rest = [a for a in args if a not in printing]
        super().parse_arguments(parser, rest)
        resets = net_resets(self.config, rest)
        if resets or printing:
            super().parse_arguments(parser, [*rest, *resets, *printing])

    def before_instantiate_classes(self) -> None:
        cfg = self.config
        if str(cfg.trainer.precision) not in FLOAT32:
            # Lightning accepts them, but SymGNN's and EGAT's fused kernels write float32 buffers (a
            # traceback in the first step) and bf16-true gave other nets NaN metrics.
            raise ConfigError(
                f"trainer.precision={cfg.trainer.precision}: mgglass's models run in float32 only (32-true); "
                "bfloat16 measured at most 1.2x faster here (docs/notes/benchmarks.md#step-round-3)"
            )
        if not self._progress:
            cfg.trainer.enable_progress_bar = False
            cfg.trainer.enable_model_summary = False
        cfg.trainer.default_root_dir = cfg.trainer.default_root_dir or cfg.tracking.root
        if not cfg.tracking.run_name:
            cfg.tracking.run_name = run_name_from(cfg)
        if not cfg.checkpoint.dirpath:
            cfg.checkpoint.dirpath = str(Path(cfg.tracking.root) / "checkpoints" / cfg.tracking.run_name)


class _ParseOnlyCLI(MGCLI):
    """Parses and checks a config (keys, types, class paths) without building data, model or trainer."""

    def _set_seed(self) -> None:  # nothing runs, so nothing to seed (and no "Seed set" line)
        pass

    def instantiate_classes(self) -> None:
        pass


def _net_settings(args):
    """``(class_path or None, init_arg names)`` for each source that sets ``model.net``, in parse order:
    base.yaml, then the ``--config`` files and ``--model.net...`` arguments as given."""
    import yaml

    def from_value(net):
        if isinstance(net, str):
            return net, set()
        if isinstance(net, dict):
            return net.get("class_path"), set(net.get("init_args") or {}) | (set(net) - {"class_path", "init_args"})
        return None, set()

    def parsed(value):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value  # the parse already accepted it: a plain string

    out = [from_value(_yaml_setting(BASE_CONFIG, "model.net"))] if BASE_CONFIG.is_file() else []
    for key, value in _options(args):
        sub = key.removeprefix("--model.net").lstrip(".").removeprefix("init_args").lstrip(".")
        if key == "--config":
            out.append(from_value(_yaml_setting(value, "model.net")))
        elif key == "--model.net":
            out.append(from_value(parsed(value)))
        elif key == "--model.net.class_path":
            out.append((value, set()))
        elif key == "--model.net.init_args":
            out.append(from_value({"init_args": parsed(value)}))
        elif key.startswith("--model.net.") and sub:
            out.append((None, {sub.split(".")[0]}))
    return out


def net_resets(cfg, args) -> list[str]:
    """Arguments that put back the defaults of init_args carried over from an earlier net class (see
    ``MGCLI.parse_arguments``): the net's own config is the whole net, as a reader of it expects."""
    import importlib

    from jsonargparse import ArgumentParser

    net = cfg.get("model.net")
    if not hasattr(net, "class_path") or net.get("init_args") is None:
        return []
    name = lambda cp: str(cp).rsplit(".", 1)[-1]
    settings, current, start = _net_settings(args), None, None
    for i, (cp, _) in enumerate(settings):
        if cp is not None:
            if current is not None and name(cp) != name(current):
                start = i
            current = cp
    if start is None:
        return []
    own = set().union(*(keys for _, keys in settings[start:]))
    module, _, cls = net.class_path.rpartition(".")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(getattr(importlib.import_module(module), cls), "net", fail_untyped=False)
    defaults = parser.get_defaults().net
    resets = []
    for key, value in vars(net.init_args).items():
        if key in own or key not in defaults or defaults[key] == value:
            continue
        default = list(defaults[key]) if isinstance(defaults[key], tuple) else defaults[key]
        try:
            resets.append(f"--model.net.init_args.{key}={json.dumps(default)}")
        except TypeError:  # an object default (rare): left as jsonargparse merged it
            continue
    return resets


def run_name_from(cfg) -> str:
    files = [Path(str(p)) for p in (cfg.get("config") or [])]
    files = [p for p in files if p.resolve() != BASE_CONFIG]
    return files[-1].stem if files else "run"


def one_line(exc: BaseException, config_files=(), args=()) -> str:
    """A config/parse error as one readable line (jsonargparse nests causes over several lines),
    naming the config file that sets the offending key when there is one."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if len(" ".join(lines)) > 400:  # long union/subclass explanations: keep the head and the deepest cause
        lines = [lines[0], lines[-1]]
    msg = " ".join(lines).replace("Parser key ", "key ")
    m = re.search(r"class_path '([^']+)'", msg)
    if m and ("No module named" in msg or "has no attribute" in msg or "not a subclass" in msg):
        msg = f"unknown model class_path {m.group(1)!r} (see mgglass/models/__init__.py): " + msg
    key = re.search(r'key "([^"]+)"', msg) or re.search(r"Group '([^']+)' does not accept option '([^']+)'", msg)
    if key:
        dotted = ".".join(g for g in key.groups() if g)
        on_cli = any(a.startswith(f"--{dotted}") for a in args)
        where = "command line" if on_cli else _file_setting(dotted, config_files)
        if where:
            msg = f"{where}: {msg}"
    return msg


_UNSET = object()


def _yaml_setting(path, dotted: str):
    """What the YAML file at ``path`` sets ``dotted`` to; ``_UNSET`` if it is unreadable or sets nothing there."""
    import yaml

    try:
        node = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return _UNSET  # the parse itself reports unreadable files
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _UNSET
        node = node[part]
    return node


def _file_setting(dotted: str, config_files) -> str | None:
    """The last of ``config_files`` whose YAML sets ``dotted`` (or a key under it)."""
    found = None
    for path in config_files:
        if _yaml_setting(path, dotted) is not _UNSET:
            found = str(path)
    return found


def _options(args) -> list[tuple[str, str]]:
    """``(--option, value)`` pairs of ``args`` in order, from ``--option value`` and ``--option=value``."""
    flat = [x for a in args for x in (a.split("=", 1) if a.startswith("--") and "=" in a else [a])]
    return [(k, v) for k, v in pairwise(flat) if k.startswith("--")]


def _config_files(args) -> list[str]:
    files = [str(BASE_CONFIG)] if BASE_CONFIG.is_file() else []
    return files + [v for k, v in _options(args) if k == "--config"]


def build(args, progress: bool | None = None, extra_callbacks=(), parse_only: bool = False) -> MGCLI:
    """Parse and instantiate, turning config errors into ConfigError (one line). ``extra_callbacks``
    are added to the Trainer's (benchmarks use it). ``parse_only``: stop after parsing (``.config``)."""
    quiet_warnings()
    keep_freed_memory()
    from jsonargparse import ArgumentError

    argv, sys.argv = sys.argv, sys.argv[:1]  # args are given explicitly: silence LightningCLI's warning
    try:
        cls = _ParseOnlyCLI if parse_only else MGCLI
        return cls(args=list(args), progress=progress, extra_callbacks=extra_callbacks)
    except SystemExit:
        raise
    except (ArgumentError, GlassDataError, ValueError, TypeError, KeyError, FileNotFoundError, ImportError) as e:
        if os.environ.get("MGGLASS_DEBUG"):
            raise
        msg = one_line(e, _config_files(args), args)
        raise ConfigError(msg if isinstance(e, (ArgumentError, GlassDataError)) else f"{type(e).__name__}: {msg}") from None
    finally:
        sys.argv = argv  # the DDP launcher re-runs sys.argv in its child processes


def check_data(dm: GlassDataModule, stage: str | None = None) -> None:
    """Fail fast (GlassDataError) on a missing data file of the splits ``stage`` reads (:func:`splits_for`)."""
    for split in splits_for(stage):
        for path in dm.files(split):
            if not Path(path).is_file():
                raise GlassDataError(path, f"no such file ({split} split; set data.root or $MGGLASS_DATA_DIR)")


def fail(prog: str, msg: str, code: int = 2) -> int:
    print(f"{prog}: error: {msg}", file=sys.stderr, flush=True)
    return code
