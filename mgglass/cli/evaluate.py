"""``python -m mgglass.validate`` and ``mgglass.test``: a checkpoint (or several, as an ensemble)
scored on the validation or test split, with its fit's config (:func:`evaluate_main`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import yaml

from mgglass.cli.config import ConfigError, build, check_data, fail
from mgglass.data import GlassDataError
from mgglass.data.datamodule import splits_for
from mgglass.inference import predict_glass
from mgglass.metrics import pooled_metrics
from mgglass.outputs import to_atoms, write_predictions, write_split_outputs
from mgglass.runtime import OutputError, output_dir, quiet_banner
from mgglass.task import (
    PredictError,
    load_models,
    load_task,
    predictive_std,
    score_members,
    uncertainty_scores,
)
from mgglass.tracking import calibrated_residual, resolve_checkpoints


def _option_value(argv: list[str], name: str) -> str | None:
    """The value of ``name`` in ``argv`` (``name=value`` or ``name value``), or None."""
    for i, a in enumerate(argv):
        if a.startswith(f"{name}="):
            return a.split("=", 1)[1]
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _pop_option(argv: list[str], name: str) -> tuple[list[str], str | None]:
    value = _option_value(argv, name)
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(f"{name}="):
            out.append(a)
    return out, value


def _pop_all(argv: list[str], name: str) -> tuple[list[str], list[str]]:
    """``argv`` without every ``name`` option, and their values (``name=v``, ``name v [v ...]``)."""
    out, values, taking = [], [], False
    for a in argv:
        if a == name:
            taking = True
        elif a.startswith(f"{name}="):
            values.append(a.split("=", 1)[1])
            taking = False
        elif taking and not a.startswith("--"):
            values.append(a)
        else:
            taking = False
            out.append(a)
    return out, values


def evaluate_main(stage: str, argv=None) -> int:
    """``python -m mgglass.validate|test (--ckpt_path CKPT [CKPT ...] | --run RUN_ID [...]) [--config FILE ...] [--out DIR]``:
    pooled metrics (eV) of a checkpoint as one JSON line; without --config, the config.yaml the fit
    wrote beside it. ``--out DIR`` also writes per-atom predictions (CSV, extxyz with ``eb_pred``) and
    a parity plot. Several checkpoints, or the run of an ensemble, are scored as their ensemble
    (mean prediction; ``eb_std`` the members' spread, with how it ranks the errors)."""
    prog = f"mgglass.{stage}"
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: python -m {prog} (--ckpt_path CKPT [CKPT ...] | --run RUN_ID [...]) [--config FILE ...] [--out DIR]\n\n"
              + " ".join(evaluate_main.__doc__.split("\n", 1)[1].split()) + "\n\nOther options are the fit's (python -m mgglass.fit --help).")
        return 0
    quiet_banner()  # the Trainer's info lines would stand before a one-line error
    argv, out_dir = _pop_option(argv, "--out")
    argv, ckpts = _pop_all(argv, "--ckpt_path")
    argv, runs = _pop_all(argv, "--run")
    residual = None  # a calibrated ensemble run's s: its eb_sigma is scored too
    if runs:
        root, uri = _option_value(argv, "--tracking.root") or "mlruns", _option_value(argv, "--tracking.tracking_uri")
        try:
            ckpts += [str(c) for r in runs for c in resolve_checkpoints(r, root, uri)]
        except PredictError as e:
            return fail(prog, str(e))
        residual = calibrated_residual(runs, root, uri) if len(ckpts) > 1 else None
    if not ckpts:
        return fail(prog, "--ckpt_path CHECKPOINT (or --run RUN_ID) is required")
    for ckpt in ckpts:
        if not Path(ckpt).is_file():
            return fail(prog, f"ckpt_path: {ckpt}: no such checkpoint")
    if len(ckpts) == 1:  # an ensemble's members are loaded, and checked, as it is built
        try:
            load_task(Path(ckpts[0]), "cpu")  # a file that is no mgglass checkpoint: one line, not the Trainer's traceback
        except PredictError as e:
            return fail(prog, str(e))
    if out_dir:
        try:
            output_dir(out_dir, "--out")
        except OutputError as e:
            return fail(prog, str(e))
    (split,) = splits_for(stage)
    member_data = [_saved_data(c) for c in ckpts] if len(ckpts) > 1 else []  # the members' own data sections
    problem = _ensemble_split_problem(argv, member_data, split) if member_data else None
    if problem:
        return fail(prog, problem)
    if not any(a == "--config" or a.startswith("--config=") for a in argv):
        saved = Path(ckpts[0]).parent / "config.yaml"
        if not saved.is_file():
            return fail(prog, f"no --config given and no {saved} beside the checkpoint")
        argv = ["--config", str(saved), *argv]
    try:
        # Nothing is written: no MLflow, and the checkpoint callback points at the checkpoint's folder.
        cli = build([*argv, "--tracking.enabled=false", f"--checkpoint.dirpath={Path(ckpts[0]).parent}"])
        check_data(cli.datamodule, stage)  # scored with the checkpoint's normaliser: no training glass needed
        if len(ckpts) > 1:
            return _evaluate_ensemble(prog, stage, cli, ckpts, member_data, out_dir, residual)
        run = cli.trainer.validate if stage == "validate" else cli.trainer.test
        results = run(cli.model, datamodule=cli.datamodule, ckpt_path=ckpts[0], verbose=False)
    except ConfigError as e:
        return fail(prog, str(e))
    except GlassDataError as e:
        return fail(prog, str(e), 1)
    if cli.trainer.is_global_zero:
        metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
        if out_dir:
            write_split_predictions(cli, split, Path(out_dir))
            metrics["out"] = str(out_dir)
        print(json.dumps({"checkpoint": ckpts[0], **metrics}), flush=True)
    return 0


def _saved_data(ckpt: str) -> dict:
    """The ``data`` section of the config.yaml a fit saved beside ``ckpt`` ({} without one)."""
    saved = Path(ckpt).parent / "config.yaml"
    return ((yaml.safe_load(saved.read_text()) or {}).get("data") or {}) if saved.is_file() else {}


def _ensemble_split_problem(argv: list[str], saved: list[dict], split: str) -> str | None:
    """Why several checkpoints (``saved``: each one's saved data section) cannot be scored on the
    ``split`` the command line gives them (None if they can). A cross-validation's fold fits were each tested on their own glass, which the other
    folds trained on: scored there, training fit would read as held-out accuracy."""
    given = _option_value(argv, f"--data.{split}")
    if given is not None:
        glasses = yaml.safe_load(given)
        glasses = [glasses] if isinstance(glasses, str) else list(glasses or ())
    elif _option_value(argv, "--config") is not None:
        return None  # the config names the split: checked once it is built
    elif len({tuple(d.get(split) or ()) for d in saved}) > 1:
        names = sorted({g for d in saved for g in d.get(split) or ()})
        return (f"the members were fitted with different data.{split} glasses ({', '.join(names)}); "
                f"name the glasses to score, e.g. --data.{split}=[test0.pickle]")
    else:
        glasses = list(saved[0].get(split) or ())
    return _trained_on(glasses, saved, split)


def _trained_on(glasses, saved: list[dict], split: str) -> str | None:
    trained = sorted(set(glasses) & {g for d in saved for g in d.get("train") or ()})
    if trained:
        return (f"data.{split}: {', '.join(trained)} trained some of the members; score glasses none of them "
                f"trained on, e.g. --data.{split}=[test0.pickle]")
    return None


def _evaluate_ensemble(prog: str, stage: str, cli, ckpts: list[str], saved: list[dict], out_dir: str | None,
                       residual: float | None = None) -> int:
    """The ensemble of ``ckpts`` on the configured split: its metrics, each member's r, and how the
    members' spread (and, with a calibrated ``residual``, ``eb_sigma``) ranks and covers the errors;
    ``out_dir`` gets the predictions with ``eb_std`` (and ``eb_sigma``)."""
    (split,) = splits_for(stage)
    problem = _trained_on(cli.config.data[split] or (), saved, split)  # a --config's split
    if problem:
        return fail(prog, problem)
    try:
        ensemble, _ = load_models([Path(c) for c in ckpts], "cpu")
    except PredictError as e:
        return fail(prog, str(e))
    dm = cli.datamodule
    dm.setup(stage)
    graphs = [g for g in dm.graphs[split] if "y" in g]
    if not graphs:
        return fail(prog, f"the {split} split has no labelled glass to score")
    members = [np.concatenate([predict_glass(m, g) for g in graphs]) for m in ensemble.members]
    y = np.concatenate([g.y.double().numpy() for g in graphs])
    mean, std, scores = score_members(y, members)
    out = {"checkpoints": list(ckpts), "members": len(ckpts), **{f"{split}_{k}": v for k, v in pooled_metrics(y, mean).items()},
           f"member_{split}_r": scores["member_r"], f"best_member_{split}_r": scores["best_member_r"],
           "uncertainty": scores["uncertainty"]}
    sigma = None if residual is None else predictive_std(std, residual)
    if sigma is not None:
        out.update(residual_std_ev=residual, uncertainty_sigma=uncertainty_scores(y, mean, sigma))
    if out_dir:
        species = list(cli.config.data.species)
        cuts = np.cumsum([g.num_nodes for g in graphs])[:-1]  # the pooled atoms back to their glasses
        columns = {"eb_pred": mean, "eb_std": std, **({} if sigma is None else {"eb_sigma": sigma})}
        parts = {k: np.split(v, cuts) for k, v in columns.items()}
        frames = [to_atoms(g, species, {"eb": g.y.double().numpy(), **{k: p[i] for k, p in parts.items()}}) for i, g in enumerate(graphs)]
        write_predictions(Path(out_dir) / "predictions.extxyz", frames)
        out["out"] = str(out_dir)
    print(json.dumps(out), flush=True)
    return 0


def write_split_predictions(cli, split: str, out: Path) -> None:
    """Per-atom predictions of the loaded checkpoint on ``split``: predictions.csv, predictions.extxyz
    (``eb``/``eb_pred`` arrays) and parity.png under ``out``."""
    model = cli.config.model.net.class_path.rsplit(".", 1)[-1]
    write_split_outputs(out, cli.model, cli.datamodule.graphs[split], list(cli.config.data.species), model)
