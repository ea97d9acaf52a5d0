"""python -m mgglass.sweep --config sweeps/symgnn.yaml [options] [--section.key=value ...]
python -m mgglass.sweep --best sweeps/symgnn.yaml

Runs (or continues) an Optuna study whose trials are ``python -m mgglass.fit`` runs of the sweep's
experiment configs with the trial's values as dotted overrides. Extra ``--section.key=value``
arguments are fixed overrides for every trial (e.g. ``--trainer.max_epochs=20``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from mgglass.cli import ConfigError, build
from mgglass.sweep.report import ParentRun, best_trial, redact, write_best_config
from mgglass.sweep.runner import (
    Runner,
    TrialFailed,
    dotted_args,
    finished_count,
    plan_slots,
)
from mgglass.sweep.spec import (
    FIELDS,
    SweepError,
    SweepSpec,
    build_pruner,
    build_sampler,
    load_spec,
    open_storage,
    storage_file,
)

PROG = "mgglass.sweep"


def _parser() -> argparse.ArgumentParser:
    epilog = "sweep file fields (sweeps/symgnn.yaml is a worked example):\n" + "\n".join(
        f"  {k:<19} {v}" for k, v in FIELDS.items()
    )
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n", 1)[1], epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", metavar="SWEEP_YAML", help="run or continue the sweep")
    what.add_argument("--best", metavar="SWEEP_YAML", help="only write the study's best trial as an experiment config")
    p.add_argument("--trials", type=int, help="finished trials to reach (overrides the file)")
    p.add_argument("--timeout", type=float, help="seconds after which no new trial starts")
    p.add_argument("--workers", help="trials at once (int or auto)")
    p.add_argument("--devices_per_trial", type=int, help="devices per trial (DDP above 1)")
    p.add_argument("--accelerator", choices=("auto", "gpu", "cpu"))
    p.add_argument("--storage", help="Optuna storage URL, or journal:PATH")
    p.add_argument("--study", help="study name")
    p.add_argument("--best_config", help="where to write the best trial's config")
    return p


def _dotted(rest: list[str]) -> dict:
    """--a.b=value / --a.b value pairs -> {a.b: parsed value}."""
    out, i = {}, 0
    while i < len(rest):
        arg = rest[i]
        if not arg.startswith("--") or "." not in arg.split("=", 1)[0]:
            raise SweepError(f"command line: unrecognised argument {arg!r} (fixed overrides look like --trainer.max_epochs=20)")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
        elif i + 1 < len(rest):
            key, value = arg[2:], rest[i + 1]
            i += 1
        else:
            raise SweepError(f"command line: {arg} needs a value")
        out[key] = yaml.safe_load(value)
        i += 1
    return out


def check_configs(spec: SweepSpec):
    """Parse the trials' configs with the fit's own parser, at both ends of every range and at every
    choice, so an unknown key or a wrong type is an error before any trial; returns one parsed config."""
    base = [a for c in spec.configs for a in ("--config", c)] + dotted_args(spec.overrides)

    def parse(extra: dict):
        return build(base + dotted_args(extra), progress=False, parse_only=True).config

    def reason(e: ConfigError) -> str:
        return str(e).removeprefix("command line: ")

    probes = [p.probe_values() for p in spec.space]
    cfg = None
    for i in range(max(len(v) for v in probes)):
        values = {p.key: v[min(i, len(v) - 1)] for p, v in zip(spec.space, probes)}
        try:
            parsed = parse(values)
            cfg = cfg or parsed
        except ConfigError as e:
            try:
                parse({})
            except ConfigError as e0:
                raise SweepError(f"{spec.path}: configs/overrides: {reason(e0)}") from None
            for key, value in values.items():
                try:
                    parse({key: value})
                except ConfigError as e1:
                    raise SweepError(f"{spec.path}: space.{key} = {value!r}: {reason(e1)}") from None
            raise SweepError(f"{spec.path}: space: {reason(e)}") from None
    return cfg


def main(argv=None) -> int:
    args, rest = _parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        fixed = _dotted(rest)
        spec = load_spec(
            args.config or args.best, trials=args.trials, timeout=args.timeout, devices_per_trial=args.devices_per_trial,
            accelerator=args.accelerator, storage=args.storage, study=args.study, best_config=args.best_config,
            workers=None if args.workers is None else (args.workers if args.workers == "auto" else _int(args.workers)),
        )
        clash = set(fixed) & {p.key for p in spec.space}
        if clash:
            raise SweepError(f"command line: {sorted(clash)} are searched by {spec.path}; they cannot also be fixed")
        spec.overrides.update(fixed)
        cfg = check_configs(spec)
        return best_only(spec, cfg) if args.best else run(spec, cfg)
    except SweepError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        return 2


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SweepError(f"command line: --workers: expected an integer or auto, not {text!r}") from None


SEARCH_ATTR = "mgglass_search"  # the study's user attribute that holds SweepSpec.search()


def _open_study(spec: SweepSpec, url: str, create: bool):
    import optuna

    if not create:
        file = storage_file(url)
        if file is not None and not file.is_file():  # opening it would leave an empty journal or database behind
            raise SweepError(f"storage {redact(url)}: no such file, so no study {spec.study!r} yet")
        try:
            return optuna.load_study(study_name=spec.study, storage=open_storage(url, spec))
        except KeyError:
            raise SweepError(f"storage {url}: no study named {spec.study!r}") from None
    storage = open_storage(url, spec)
    try:
        study = optuna.create_study(
            study_name=spec.study, storage=storage, sampler=build_sampler(spec), pruner=build_pruner(spec.pruner, spec.path),
            direction=spec.direction, load_if_exists=True,
        )
    except ValueError as e:  # e.g. an existing study with another direction
        raise SweepError(f"storage {url}: study {spec.study!r}: {e}") from None
    # The study's name defaults to the sweep file's stem, so an edited copy elsewhere (mine/symgnn.yaml)
    # would join the original's trials: a study remembers its search and takes no other.
    mine, theirs = spec.search(), study.user_attrs.get(SEARCH_ATTR)
    if theirs is None:  # new, or from before studies remembered
        study.set_user_attr(SEARCH_ATTR, mine)
    elif theirs != mine:
        differ = ", ".join(k for k in mine if mine[k] != theirs.get(k))
        raise SweepError(f"storage {redact(url)}: study {spec.study!r} holds another search's trials ({differ} differ); "
                         f"give {spec.path} its own study (study: NAME in the file, or --study NAME)")
    return study


def best_only(spec: SweepSpec, cfg) -> int:
    study = _open_study(spec, spec.storage_url(cfg.tracking.root), create=False)
    path = write_best_config(spec, study)
    if path is None:
        raise SweepError(f"study {spec.study!r} has no completed trial yet")
    print(f"{PROG}: best config: {path}", flush=True)
    return 0


def run(spec: SweepSpec, cfg) -> int:
    import optuna

    url = spec.storage_url(cfg.tracking.root)
    optuna.logging.set_verbosity(optuna.logging.INFO)
    study = _open_study(spec, url, create=True)
    slots = plan_slots(spec)
    parent = ParentRun(cfg.tracking, spec, url)
    out_dir = Path(cfg.tracking.root) / "sweeps" / spec.study
    print(
        f"{PROG}: study {spec.study!r} in {redact(url)} ({spec.trials} finished trials wanted, "
        f"{finished_count(study)} so far)\n"
        f"{PROG}: {len(slots)} worker(s): {'; '.join(dict.fromkeys(s.describe() for s in slots))}\n"
        f"{PROG}: MLflow parent run {parent.run_id} in {parent.uri} (experiment {cfg.tracking.experiment!r}; make ui)\n"
        f"{PROG}: trial checkpoints and logs in {Path(cfg.tracking.root) / 'checkpoints' / spec.study}/\n"
        f"{PROG}: best config will be {spec.best_config_path}",
        flush=True,
    )
    runner = Runner(spec, study, url, cfg.tracking.root, slots, parent.run_id)
    status, code = "FINISHED", 0
    try:
        runner.run(spec.timeout)
    except KeyboardInterrupt:
        status, code = "KILLED", 130
    except TrialFailed as e:
        print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        status, code = "FAILED", 1
    finally:
        best_path = write_best_config(spec, study)
        parent.finish(study, spec, out_dir, best_path, status)
    best = best_trial(study)
    if best is None:
        print(f"{PROG}: no trial completed; plots and trials.csv in {out_dir}/", flush=True)
        return code or 1
    print(
        f"{PROG}: best trial {best.number}: {spec.metric} {best.value:.4f} with {best.params}\n"
        f"{PROG}: best config: {best_path} (python -m mgglass.fit --config {best_path})\n"
        f"{PROG}: plots and trials.csv: {out_dir}/ (also MLflow run {parent.run_id}, artifacts optuna/)",
        flush=True,
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
