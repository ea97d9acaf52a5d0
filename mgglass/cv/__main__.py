"""python -m mgglass.cv --config experiments/symgnn.yaml [--folds train0,train3] [--seeds 0,1,2]
    [--val least-relaxed|ends|NAME,...] [--workers auto|N] [--name NAME] [--reference soap|none] [--summary_only]
    [--section.key=value ...]

Leave-one-glass-out cross-validation over the seven labelled training glasses (train0-6; test0 is
never in a fold, so choices made on folds leave it clean): for each held-out glass one fit of the
config per seed, trained on the others minus the fold's validation glasses (``--val``: the least
relaxed remaining glass by default, i.e. train6, or train5 when train6 is held out), scored on the
held-out glass. Fits run as parallel workers (two one-thread fits on a 2-core machine, one per GPU
where there are GPUs), each a child MLflow run under the cross-validation's parent run.
A SOAP + LightGBM reference runs on the same folds (``--reference none`` skips it).

Prints and writes (under ``<tracking root>/cv/<name>/``) the table per held-out glass: r, R², MAE,
Spearman, predicted against labelled mean, the glass's mean potential energy and R² on the level line
of the glasses its fold saw (as ``mgglass.predict --level`` places a glass); the mean and the worst
fold; with several seeds, the seeds' ensemble and how its spread ranks the errors. Rerunning the same
command after an interruption (even ``kill -9``) continues where it stopped; ``--summary_only``
rebuilds the outputs from the fits already finished and fits nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mgglass.baselines.soap import ReferenceError, fit_predict
from mgglass.cli import ConfigError, build
from mgglass.cv import summary
from mgglass.cv.folds import (
    OFFICIAL_GLASSES,
    RULES,
    FoldError,
    glass_stem,
    parse_groups,
    plan_folds,
)
from mgglass.cv.run import (
    PROG,
    CVError,
    ParentRun,
    Plan,
    check_partner,
    check_same_plan,
    collect,
    finished_scope,
    line_mean,
    partner_rows,
    read_plan,
    run_folds,
)
from mgglass.data import GlassDataError, GlassDataModule, read_glass
from mgglass.level import LevelError, mean_level
from mgglass.workers import SlotError, plan_slots

EXIT_USAGE, EXIT_FAILED = 2, 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", required=True, help="experiment config(s), layered as mgglass.fit does")
    p.add_argument("--name", help="the cross-validation's name: run names, folders (default: cv-<last config's stem>)")
    p.add_argument("--glasses", default=",".join(OFFICIAL_GLASSES), help="the labelled glasses (comma-separated; default train0-6)")
    p.add_argument("--folds", help="held-out glasses to run (default: every glass)")
    p.add_argument("--groups", help="glasses held out together, e.g. train0+train1,train5+train6: a glass's fold "
                   "leaves its whole group out of training and validation (default: none)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds: one fit per fold and seed (default 0)")
    p.add_argument("--val", default="least-relaxed",
                   help=f"validation glasses of each fold: {' | '.join(RULES)} | NAME[,NAME] (never the held-out glass)")
    p.add_argument("--level_key", default="pot", help="per-atom array whose glass mean orders the glasses and sets the level line (default pot)")
    p.add_argument("--workers", default="auto", help="fits at once (int or auto)")
    p.add_argument("--devices_per_fold", type=int, default=1, help="devices per fit (DDP above 1)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per fit (default: the cores shared out among the workers)")
    p.add_argument("--accelerator", default="auto", choices=("auto", "gpu", "cpu"))
    p.add_argument("--reference", default="soap", choices=("soap", "none"), help="descriptor reference on the same folds")
    p.add_argument("--with", dest="partners", action="append", default=[], metavar="NAME",
                   help="another cross-validation on the same folds (e.g. another config): adds the ensemble of each fold's "
                   "fit with NAME's fit of that fold and seed as the model '<model> + NAME' (repeatable)")
    p.add_argument("--summary_only", action="store_true", help="rebuild the summary and the parent run's metrics from the "
                   "fits already finished; fit nothing (and compute no reference not cached)")
    return p


def _dotted(rest: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(rest):
        arg = rest[i]
        if not arg.startswith("--") or "." not in arg.split("=", 1)[0]:
            raise CVError(f"command line: unrecognised argument {arg!r} (fixed overrides look like --trainer.max_epochs=20)")
        if "=" in arg:
            out.append(arg)
        elif i + 1 < len(rest):
            out.append(f"{arg}={rest[i + 1]}")
            i += 1
        else:
            raise CVError(f"command line: {arg} needs a value")
        i += 1
    reserved = ("--data.train", "--data.val", "--data.test", "--seed_everything", "--ckpt_path", "--checkpoint.dirpath",
                "--tracking.run_name", "--tracking.parent_run_id")
    clash = [a.split("=", 1)[0] for a in out if a.split("=", 1)[0].startswith(reserved)]
    if clash:
        raise CVError(f"command line: {', '.join(clash)} is set per fold by {PROG} (use --glasses, --val, --seeds)")
    return out


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CVError(f"--{what}: expected comma-separated integers, not {text!r}") from None
    if not values or len(set(values)) != len(values):
        raise CVError(f"--{what}: expected distinct comma-separated integers, not {text!r}")
    return values


def levels_of(files: dict[str, Path], key: str, species, label_key: str = "eb") -> tuple[dict[str, float], dict[str, float]]:
    """Each glass's mean of the per-atom array ``key`` and its mean label (nan where a glass has none);
    an array that is there is checked as ``mgglass.predict --level`` checks it (one finite value per atom)."""
    levels, means = {}, {}
    for name, path in files.items():
        glass = read_glass(path, label_key=label_key, species=species, labels_optional=True)
        levels[name] = mean_level(glass, key) if key in glass.extras else float("nan")
        means[name] = float(np.mean(glass.labels)) if glass.labels is not None else float("nan")
    return levels, means


def main(argv=None) -> int:
    args, rest = _parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        overrides = _dotted(rest)
        seeds = _ints(args.seeds, "seeds")
        glasses = [g.strip() for g in args.glasses.split(",") if g.strip()]
        configs = list(args.config)
        cfg = build([a for c in configs for a in ("--config", c)] + overrides, progress=False, parse_only=True).config
        name = args.name or f"cv-{Path(configs[-1]).stem}"
        d = cfg.data
        dm = GlassDataModule(root=d.root, train=tuple(glasses), val=(), test=(), species=tuple(d.species), base_url=d.base_url,
                             synthetic_atoms=d.synthetic_atoms, synthetic_seed=d.synthetic_seed, label_key=d.label_key)
        files = dict(zip(glasses, dm.files("train")))
        levels, label_means = levels_of(files, args.level_key, tuple(d.species), d.label_key)
        groups = parse_groups(args.groups, glasses)
        folds = plan_folds(glasses, args.val, levels, [f.strip() for f in args.folds.split(",")] if args.folds else None, groups)
        try:  # every glass's fold under these rules: the summary covers those an earlier --folds ran
            every = plan_folds(glasses, args.val, levels, None, groups)
        except FoldError:
            every = folds
        plan = Plan(name, configs, overrides, folds, seeds, d.root, Path(cfg.tracking.root), levels, args.level_key, args.reference,
                    label_means)
        check_same_plan(plan)
        for partner in args.partners:
            check_partner(plan, partner)
        if args.summary_only and read_plan(plan) is None:
            raise CVError(f"--summary_only: {plan.out_dir} holds no cross-validation to summarise")
        slots = plan_slots(args.accelerator, args.devices_per_fold, args.workers if args.workers == "auto" else _ints(args.workers, "workers")[0])
        if args.threads < 0:
            raise CVError(f"--threads: expected a positive number, not {args.threads}")
        for s in slots:
            s.threads = args.threads or s.threads
    except (CVError, FoldError, ConfigError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except SlotError as e:
        print(f"{PROG}: error: --{e.where.replace('_trial', '_fold')}: {e.msg}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except (GlassDataError, LevelError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    return run(plan, cfg, slots, files, tuple(d.species), model=cfg.model.net.class_path.rsplit(".", 1)[-1], every=every,
               fit=not args.summary_only, partners=args.partners)


def run(plan: Plan, cfg, slots, files: dict[str, Path], species, model: str, every=None, fit: bool = True,
        partners: list[str] = ()) -> int:
    parent = ParentRun(plan, cfg.tracking)
    work = (f"{len(plan.folds)} fold(s) x {len(plan.seeds)} seed(s) on {len(slots)} worker(s) "
            f"({'; '.join(dict.fromkeys(s.describe() for s in slots))})") if fit else "the summary of the fits already finished (--summary_only)"
    print(f"{PROG}: {plan.name}: {work}\n"
          f"{PROG}: MLflow parent run {parent.run_id} in {parent.uri}; fits in {plan.root / 'checkpoints' / plan.name}/; "
          f"summary in {plan.out_dir}/", flush=True)
    status, code, failures = "FINISHED", 0, []
    try:
        failures = run_folds(plan, slots, parent.run_id) if fit else []
        # The summary covers every finished fit of this cross-validation, not only this invocation's.
        scope = finished_scope(plan, every or plan.folds)
        rows = collect(scope, model)
        for partner in partners:
            rows += partner_rows(scope, partner, model)
        if plan.reference != "none":
            rows += reference_rows(scope, files, species, compute={f.name for f in plan.folds} if fit else set())
    except KeyboardInterrupt:
        parent.client.set_terminated(parent.run_id, status="KILLED")
        return 130
    except Exception as e:
        parent.client.set_terminated(parent.run_id, status="FAILED")
        if isinstance(e, CVError):
            print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
            return EXIT_FAILED
        raise
    for f in failures:
        print(f"{PROG}: error: {f}", file=sys.stderr, flush=True)
    if failures:
        status, code = "FAILED", EXIT_FAILED
    aggregates = [a for a in (summary.aggregate(rows, m) for m in dict.fromkeys(r["model"] for r in rows)) if a]
    out = plan.out_dir
    out.mkdir(parents=True, exist_ok=True)
    title = f"{plan.name}: leave-one-glass-out ({', '.join(plan.configs)}{' ' + ' '.join(plan.overrides) if plan.overrides else ''})"
    files_out = [out / "folds.csv", out / "summary.md", out / "cv.png"]
    summary.write_csv(files_out[0], rows)
    text = summary.markdown(rows, aggregates, title, plan.level_key)
    files_out[1].write_text(text)
    if rows:
        summary.plot(files_out[2], rows, title, plan.level_key)
    parent.finish(scope, rows, aggregates, files_out, status)
    print(text, flush=True)
    print(json.dumps({"name": plan.name, "run_id": parent.run_id, "summary": str(files_out[1]),
                      **{a["model"]: {**{k: a[k] for k in ("folds", "r_mean", "r_worst", "worst_fold", "r2_mean")},
                                      "r2_level_mean": a["r2_level_mean"] if np.isfinite(a["r2_level_mean"]) else None}
                         for a in aggregates}}),
          flush=True)
    return code


def reference_rows(plan: Plan, files: dict[str, Path], species, compute: set[str] | None = None) -> list[dict]:
    """The SOAP + LightGBM reference on each fold (cached per fold under ``reference/``); a fold not in
    ``compute`` (None: every fold) only from its cache."""
    rows = []
    for fold in plan.folds:
        cache = plan.out_dir / "reference" / f"{fold.name}.npz"
        if cache.is_file():
            z = np.load(cache)
            y, p = z["y"], z["p"]
        elif compute is not None and fold.name not in compute:
            continue
        else:
            print(f"{PROG}: reference (SOAP + LightGBM) on fold {fold.name}", flush=True)
            try:
                preds, _ = fit_predict([files[g] for g in fold.train], [files[g] for g in fold.val], [files[fold.held_out]], species)
            except ReferenceError as e:
                raise CVError(f"--reference soap: {e} (or --reference none)") from None
            y, p = preds[files[fold.held_out].name]
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache.with_suffix(".tmp.npz"), y=y, p=p)
            cache.with_suffix(".tmp.npz").replace(cache)
        rows.append(summary.fold_row("reference", fold.name, ",".join(glass_stem(v) for v in fold.val), "0", y, p,
                                     plan.levels.get(fold.held_out, float("nan")), line_mean(plan, fold)))
    return rows


if __name__ == "__main__":
    sys.exit(main())
