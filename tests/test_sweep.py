"""python -m mgglass.sweep: sweep files are checked before any trial, trials are ordinary fits run by
parallel workers (and with DDP), pruning stops every rank, MLflow nests trial runs under a parent,
the best trial becomes a runnable config, and a sweep killed with -9 continues where it stopped."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml
from test_fit import (
    ROOT,
    artifact_paths,
    client_for,
    kill_when_logged,
    run_cli,
)

from mgglass.runtime import machine
from mgglass.tracking import ui_name

SMOKE_SWEEP = "sweeps/smoke.yaml"


def sweep_file(tmp_path: Path, **fields) -> Path:
    spec = yaml.safe_load((ROOT / SMOKE_SWEEP).read_text())
    spec.update(fields)
    path = tmp_path / f"{fields.get('study', 'sweep')}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def load(root: Path, study: str):
    import optuna

    return optuna.load_study(study_name=study, storage=f"sqlite:///{root}/optuna.db")


def runs_of(root: Path, experiment: str = "smoke"):
    c = client_for(root)
    return c, c.search_runs([c.get_experiment_by_name(experiment).experiment_id])


# -- checks before anything runs -------------------------------------------------------------------
@pytest.mark.parametrize(
    "space, expected",
    [
        ({"model.net.init_args.bogus": {"type": "float", "low": 0, "high": 1}}, "space.model.net.init_args.bogus"),
        ({"trainer.max_epoch": {"type": "int", "low": 1, "high": 3}}, "space.trainer.max_epoch"),
        ({"model.net.init_args.dropout": {"type": "float", "low": 0.3, "high": 0.3}}, "empty range"),
        ({"model.net.init_args.dropout": {"type": "beta", "low": 0, "high": 1}}, "unknown distribution type 'beta'"),
        ({"model.net.init_args.hidden": {"type": "categorical", "choices": []}}, "non-empty list of choices"),
        ({"model.net.init_args.hidden": {"type": "categorical", "choices": ["wide"]}}, "space.model.net.init_args.hidden"),
    ],
)
def test_bad_search_space_is_one_line_error_before_any_trial(tmp_path, monkeypatch, capsys, space, expected):
    from mgglass.sweep.__main__ import main

    monkeypatch.chdir(ROOT)
    path = sweep_file(tmp_path, space=space)
    rc = main(["--config", str(path), f"--tracking.root={tmp_path / 'mlruns'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("mgglass.sweep: error: ")
    assert str(path) in err and expected in err, err
    assert not (tmp_path / "mlruns").exists()  # no study, no MLflow run, no trial


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"objective": {"metric": "test_r"}}, "not a validation metric"),
        ({"pruner": {"name": "sometimes"}}, "unknown pruner 'sometimes'"),
        ({"sampler": {"name": "tpe", "bogus": 1}}, "sampler: tpe"),
        ({"trials": None, "timeout": None}, "needs a budget"),
        ({"colour": "blue"}, "unknown field(s) ['colour']"),
        ({"best_config": "experiments/smoke.yaml"}, "best_config: experiments/smoke.yaml is one of its configs"),
    ],
)
def test_bad_sweep_fields_are_one_line_errors(tmp_path, monkeypatch, capsys, fields, expected):
    from mgglass.sweep.__main__ import main

    monkeypatch.chdir(ROOT)
    rc = main(["--config", str(sweep_file(tmp_path, **fields)), f"--tracking.root={tmp_path / 'mlruns'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and expected in err, err


def test_unusable_storage_is_one_line_error(tmp_path, monkeypatch, capsys):
    from mgglass.sweep.__main__ import main

    monkeypatch.chdir(ROOT)
    rc = main(["--config", SMOKE_SWEEP, "--storage", "nosuchdb://host/x", f"--tracking.root={tmp_path / 'mlruns'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "storage: nosuchdb://host/x" in err, err



@pytest.mark.parametrize("storage", ["journal", "default"])
def test_best_of_a_storage_that_is_not_there_creates_nothing(tmp_path, monkeypatch, capsys, storage):
    from mgglass.sweep.__main__ import main

    monkeypatch.chdir(ROOT)
    journal = tmp_path / "journal.log"
    extra = ["--storage", f"journal:{journal}"] if storage == "journal" else []
    rc = main(["--best", SMOKE_SWEEP, f"--tracking.root={tmp_path / 'mlruns'}", f"--best_config={tmp_path / 'b.yaml'}", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "no such file, so no study 'smoke' yet" in err, err
    assert list(tmp_path.iterdir()) == []  # no empty journal, database or folder left behind


def test_a_study_takes_no_other_search(tmp_path, monkeypatch):
    """Two sweep files of one stem (sweeps/symgnn.yaml, mine/symgnn.yaml) name one study by default: the
    study remembers its search, so the edited copy is refused instead of mixing its trials in."""
    from mgglass.sweep.__main__ import _open_study
    from mgglass.sweep.spec import SweepError, load_spec

    monkeypatch.chdir(ROOT)
    url = f"sqlite:///{tmp_path}/optuna.db"
    (tmp_path / "mine").mkdir()
    original = load_spec(sweep_file(tmp_path, study="s"))
    assert _open_study(original, url, create=True).user_attrs["mgglass_search"] == original.search()
    _open_study(load_spec(sweep_file(tmp_path, study="s")), url, create=True)  # the same search continues
    space = yaml.safe_load((ROOT / SMOKE_SWEEP).read_text())["space"]
    edited = {**space, "model.net.init_args.dropout": {"type": "float", "low": 0.0, "high": 0.5}}
    edited_file = sweep_file(tmp_path / "mine", study="s", space=edited, overrides={"trainer.max_epochs": 5})
    with pytest.raises(SweepError, match=r"study 's' holds another search's trials \(overrides, space differ\)"):
        _open_study(load_spec(edited_file), url, create=True)

@pytest.mark.parametrize("name", ["symgnn", "schnet", "smoke"])
def test_shipped_sweeps_parse_with_the_fit_parser(monkeypatch, name):
    """Every key of the shipped search spaces exists with the right type, at both ends of each range."""
    from mgglass.sweep.__main__ import check_configs
    from mgglass.sweep.spec import load_spec

    monkeypatch.chdir(ROOT)
    spec = load_spec(f"sweeps/{name}.yaml")
    assert check_configs(spec) is not None
    assert spec.metric == "val_r" and spec.direction == "maximize"


def test_list_choices_round_trip_into_a_config(monkeypatch, tmp_path):
    """heads is a list: Optuna stores it as JSON text, the config gets the list back."""
    import optuna

    from mgglass.cli import build
    from mgglass.sweep.report import write_best_config
    from mgglass.sweep.spec import load_spec

    monkeypatch.chdir(ROOT)
    spec = load_spec("sweeps/symgnn.yaml", best_config=str(tmp_path / "best.yaml"))
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    values = {p.key: p.suggest(trial) for p in spec.space}
    study.tell(trial, 0.5)
    assert isinstance(values["model.net.init_args.heads"], list)
    path = write_best_config(spec, study)
    cfg = build(["--config", str(path)], progress=False, parse_only=True).config
    init = cfg.model.net.init_args
    assert list(init.heads) == values["model.net.init_args.heads"]
    assert init.dropout == pytest.approx(values["model.net.init_args.dropout"])
    assert cfg.trainer.max_epochs == 60 and cfg.checkpoint.monitor == "val_r"


def test_plan_slots_pins_gpus_and_shares_cpu_cores():
    from mgglass.sweep.runner import plan_slots
    from mgglass.sweep.spec import SweepSpec

    spec = SweepSpec(path=Path("s.yaml"), study="s", configs=[], space=[], devices_per_trial=2)
    gpu = plan_slots(spec, gpu_count=4, cpu_count=32)
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in gpu] == ["0,1", "2,3"]
    assert "--trainer.strategy=ddp" in gpu[0].overrides() and "--trainer.devices=2" in gpu[0].overrides()
    cpu = plan_slots(spec, gpu_count=0, cpu_count=2)
    assert len(cpu) == 1 and cpu[0].accelerator == "cpu" and cpu[0].threads == 1
    spec.devices_per_trial = 1
    cpu = plan_slots(spec, gpu_count=0, cpu_count=2)
    assert len(cpu) == 2 and all(s.env()["OMP_NUM_THREADS"] == "1" for s in cpu)
    spec.workers, spec.devices_per_trial = 3, 2
    with pytest.raises(Exception, match="3 workers x 2 GPUs need 6"):
        plan_slots(spec, gpu_count=4, cpu_count=2)


# -- the smoke sweep with 2 workers ----------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory):
    base = tmp_path_factory.mktemp("sweep-smoke")
    root, best = base / "mlruns", base / "best.yaml"
    p = run_cli("mgglass.sweep", ["--config", SMOKE_SWEEP, f"--tracking.root={root}", f"--best_config={best}"], base, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return {"root": root, "best": best, "base": base, "stdout": p.stdout}


def test_smoke_sweep_runs_its_trials_two_at_a_time(smoke_sweep):
    from optuna.trial import TrialState

    study = load(smoke_sweep["root"], "smoke")
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    assert any(a[1] > b[0] for a, b in itertools.pairwise(spans)), "no two trials overlapped: one worker, not two"
    for t in trials:
        assert sorted(t.intermediate_values) == list(range(len(t.intermediate_values))) and t.intermediate_values
        assert (smoke_sweep["root"] / "checkpoints" / "smoke" / f"trial-{t.number}" / "last.ckpt").is_file()
    out = smoke_sweep["stdout"]
    assert "MLflow parent run" in out and "best config:" in out and str(smoke_sweep["best"]) in out


def test_trial_runs_nest_under_one_parent_with_the_studys_values(smoke_sweep):
    study = load(smoke_sweep["root"], "smoke")
    c, runs = runs_of(smoke_sweep["root"])
    parents = [r for r in runs if r.data.tags.get("mgglass_role") == "sweep"]
    assert len(parents) == 1
    parent = parents[0]
    children = {r.data.tags["optuna_trial"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == [str(t.number) for t in study.trials]
    for t in study.trials:
        run = children[str(t.number)]
        assert run.data.tags["optuna_state"] == t.state.name and run.info.run_id == t.user_attrs["mlflow_run_id"]
        val_r = [m.value for m in c.get_metric_history(run.info.run_id, ui_name("val_r"))]
        assert len(val_r) == len(t.intermediate_values)
        assert [t.intermediate_values[i] for i in range(len(val_r))] == pytest.approx(val_r)
        if t.state.name == "COMPLETE":
            # The score is the validation-selected epoch's val_r, the checkpoint the fit keeps.
            assert t.value == pytest.approx(max(val_r)) and ui_name("test_r") in run.data.metrics
        # The trial's values reached the fit as overrides.
        assert float(run.data.params["model.optimizer.init_args.lr"]) == pytest.approx(t.params["model.optimizer.init_args.lr"])
    best = study.best_trial
    assert parent.data.metrics[ui_name("best_val_r")] == pytest.approx(best.value)
    assert parent.data.tags["best_trial"] == str(best.number)
    assert parent.data.tags["machine"] == machine() and {r.data.tags["machine"] for r in children.values()} == {machine()}
    assert json.loads(parent.data.params["best.model.net.init_args.hidden"]) == best.params["model.net.init_args.hidden"]
    arts = artifact_paths(c, parent.info.run_id)
    assert {"optuna/trials.csv", "optuna/optimization_history.png", "best/best.yaml", "sweep/smoke.yaml"} <= set(arts), arts
    assert parent.info.status == "FINISHED"


def test_best_config_reruns_the_best_trial_with_mgglass_fit(smoke_sweep, monkeypatch, capsys):
    study = load(smoke_sweep["root"], "smoke")
    cfg = yaml.safe_load(smoke_sweep["best"].read_text())
    best = study.best_trial
    assert cfg["model"]["optimizer"]["init_args"]["lr"] == pytest.approx(best.params["model.optimizer.init_args.lr"])
    assert cfg["model"]["net"]["init_args"]["hidden"] == best.params["model.net.init_args.hidden"]
    assert cfg["trainer"]["max_epochs"] == 4 and cfg["model"]["net"]["class_path"].endswith("SymGNN")
    root = smoke_sweep["base"] / "rerun"
    p = run_cli("mgglass.fit", ["--config", str(smoke_sweep["best"]), f"--tracking.root={root}"], smoke_sweep["base"])
    assert p.returncode == 0, p.stderr[-2000:]
    # On demand: --best rewrites it from the study alone.
    from mgglass.sweep.__main__ import main

    monkeypatch.chdir(ROOT)
    again = smoke_sweep["base"] / "again.yaml"
    assert main(["--best", SMOKE_SWEEP, f"--tracking.root={smoke_sweep['root']}", f"--best_config={again}"]) == 0
    assert yaml.safe_load(again.read_text()) == cfg


# -- DDP trials and pruning ------------------------------------------------------------------------
def test_ddp_trial_is_pruned_on_every_rank(tmp_path):
    """One trial on 2 gloo processes; a threshold pruner no val_r can pass prunes it after epoch 1.
    If only rank 0 stopped, rank 1 would wait in a collective and the sweep would time out."""
    path = sweep_file(
        tmp_path, study="ddp", trials=1, workers=1, devices_per_trial=2,
        pruner={"name": "threshold", "lower": 2.0, "n_warmup_steps": 1},
    )
    root = tmp_path / "mlruns"
    p = run_cli("mgglass.sweep", ["--config", str(path), f"--tracking.root={root}", "--trainer.max_epochs=6"], tmp_path, timeout=400)
    assert p.returncode == 1 and "no trial completed" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]
    (trial,) = load(root, "ddp").get_trials()
    assert trial.state.name == "PRUNED" and sorted(trial.intermediate_values) == [0, 1]
    c, runs = runs_of(root)
    (child,) = [r for r in runs if r.data.tags.get("optuna_trial") == "0"]
    assert child.data.params["trainer.devices"] == "2" and child.data.params["trainer.strategy"] == "ddp"
    assert child.data.tags["optuna_state"] == "PRUNED" and ui_name("test_r") not in child.data.metrics
    assert [m.step for m in c.get_metric_history(child.info.run_id, ui_name("val_r"))] == [0, 1]


# -- kill -9 and continue --------------------------------------------------------------------------
def test_killed_sweep_continues_and_retries_the_interrupted_trial(tmp_path):
    from optuna.trial import TrialState

    path = sweep_file(tmp_path, study="killed", trials=3, workers=1, pruner={"name": "none"})
    root = tmp_path / "mlruns"
    # Epochs of >= 1.5 s (tests/_slow_epochs.py): the kill lands between trial 1's first epoch and its end.
    args = ["--config", str(path), f"--tracking.root={root}", "--trainer.max_epochs=3", "--trainer.callbacks+=_slow_epochs.SlowEpochs"]
    log = root / "checkpoints" / "killed" / "trial-1.log"
    # Killed once trial 1 has trained an epoch (trial 0 is done); its trial notices and ends its process group.
    orphan = kill_when_logged("mgglass.sweep", args, tmp_path, log, str(root / "checkpoints" / "killed" / "trial-1"))
    assert not orphan, "the killed sweep's trial kept training"
    states = [t.state for t in load(root, "killed").get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.RUNNING]

    p = run_cli("mgglass.sweep", args, tmp_path, timeout=400)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "interrupted" in p.stdout
    trials = load(root, "killed").get_trials()
    assert trials[1].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == 1]
    assert len(retries) == 1 and retries[0].params == trials[1].params and retries[0].state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    _, runs = runs_of(root)
    parents = sorted((r for r in runs if r.data.tags.get("mgglass_role") == "sweep"), key=lambda r: r.info.start_time)
    assert len(parents) == 2  # one parent per invocation; the killed one's is closed by the next
    assert [r.info.status for r in parents] == ["KILLED", "FINISHED"]
