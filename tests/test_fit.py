"""python -m mgglass.fit end to end on experiments/smoke.yaml: MLflow contents, determinism, config
errors, --print_config, plain logs, validate/test entry points.

Fits run in subprocesses with MLflow and checkpoints under a tmp folder (``--tracking.root``); each
distinct fit runs once per session (cached under pytest's basetemp) and is shared by other modules.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from _cli import run_module

from mgglass.runtime import machine
from mgglass.tracking import ui_name

ROOT = Path(__file__).resolve().parents[1]
SMOKE = "experiments/smoke.yaml"
EPOCHS = 6  # experiments/smoke.yaml: trainer.max_epochs


def fit_env(base: Path) -> dict:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)  # --tracking.root decides; never the repo's mlruns/
    env.pop("MGGLASS_DEBUG", None)
    env["MGGLASS_CACHE_DIR"] = str(base.parent / "cache")  # the session cache of conftest
    env["PYTHONHASHSEED"] = "0"
    # Test-only callbacks (tests/_slow_epochs.py) importable by the fits the tests start.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")]))
    return env


def processes_with(marker: str) -> list[int]:
    """Pids of the processes whose command line contains ``marker``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def kill_when_logged(module: str, args: list[str], base: Path, log: Path, child: str) -> bool:
    """Start ``python -m module args``, SIGKILL it once its child's ``log`` shows epoch 0, then give the
    orphaned child (command line containing ``child``) 10 s to notice and end itself; returns whether
    it is still running."""
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=fit_env(base),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            if log.is_file() and "epoch   0" in log.read_text():
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"{log.name}: the child fit never trained")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    for _ in range(20):
        if not processes_with(child):
            break
        time.sleep(0.5)
    return bool(processes_with(child))


def run_cli(module: str, args: list[str], base: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m module args`` in a process of its own (forked from a warm interpreter: tests/_cli.py)."""
    return run_module(module, args, cwd=ROOT, env=fit_env(base), timeout=timeout)


def smoke_fit(tmp_path_factory, name: str, *extra: str) -> dict:
    """Run the smoke fit once per session under <basetemp>/<name>; returns rc/stdout/stderr/root."""
    base = tmp_path_factory.getbasetemp() / name
    done = base / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    base.mkdir(parents=True, exist_ok=True)
    p = run_cli("mgglass.fit", ["--config", SMOKE, f"--tracking.root={base}", *extra], base)
    result = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr, "root": str(base)}
    done.write_text(json.dumps(result))
    return result


def training_graphs(ckpt: dict) -> list:
    """The training glasses of the fit that wrote ``ckpt`` (a loaded checkpoint), as its datamodule built them."""
    from mgglass.data import GlassDataModule

    dm = GlassDataModule(**{k: v for k, v in ckpt["datamodule_hyper_parameters"].items() if not k.startswith("_")})
    dm.setup()
    return dm.graphs["train"]


def client_for(root) -> object:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")


def only_run(root, experiment: str = "smoke"):
    c = client_for(root)
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id])
    assert len(runs) == 1, f"expected one MLflow run, got {len(runs)}"
    return c, runs[0]


def artifact_paths(c, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for f in c.list_artifacts(run_id, path):
        out.extend(artifact_paths(c, run_id, f.path) if f.is_dir else [f.path])
    return out


def metrics_of(root, prefixes=("val_", "test_")) -> dict[str, float]:
    _, run = only_run(root)
    task = {k.replace("/", "_", 1): v for k, v in run.data.metrics.items()}  # MLflow's val/r is the task's val_r
    return {k: v for k, v in task.items() if k.startswith(prefixes)}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    r = smoke_fit(tmp_path_factory, "smoke-a")
    assert r["rc"] == 0, r["stderr"][-3000:]
    return r


def test_smoke_run_is_one_complete_mlflow_run(smoke):
    c, run = only_run(smoke["root"])
    assert run.info.status == "FINISHED"
    rid = run.info.run_id
    # Resolved hyperparameters as params (base.yaml defaults included).
    params = run.data.params
    assert params["model.net.class_path"] == "mgglass.models.symgnn.SymGNN"
    assert params["model.net.init_args.hidden"] == "8"
    assert params["trainer.gradient_clip_val"] == "0.1"
    assert params["model.optimizer.init_args.amsgrad"] == "True"
    assert params["data.root"] == "synthetic"
    # Tags.
    tags = run.data.tags
    assert tags["model"] == "SymGNN" and tags["seed"] == "0"
    assert len(tags["data_hash"]) == 64 and len(tags["git_commit"]) in (40, 7) or tags["git_commit"] == "unknown"
    assert tags["data_files"].startswith("synthetic: train train0.xyz,")
    assert tags["machine"] == machine() and tags["torch_threads"].isdigit()  # wall times name their machine
    # Every glass a run input (the UI's "Datasets"), its split as the context, its bytes' digest.
    inputs = {(d.dataset.name, {t.key: t.value for t in d.tags}["mlflow.data.context"]): d.dataset for d in run.inputs.dataset_inputs}
    cfg = yaml.safe_load((Path(smoke["root"]) / "checkpoints" / "smoke" / "config.yaml").read_text())["data"]
    assert sorted(inputs) == sorted((n, split) for split in ("train", "val", "test") for n in cfg[split])
    assert all(len(d.digest) == 16 and d.source_type == "local" for d in inputs.values())
    # A description for the UI's run page, and an experiment the UI opens as model training.
    assert tags["mlflow.note.content"].startswith("SymGNN (seed 0) on synthetic") and f"test r {run.data.metrics[ui_name('test_r')]:.3f}" in tags["mlflow.note.content"]
    assert c.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    # Per-epoch train/val metrics, keyed by step = epoch, each epoch exactly once.
    for key in ("train_loss", "train_r", "val_loss", "val_r", "val_r2", "val_mae", "val_rmse", "val_spearman", "lr"):
        steps = [m.step for m in c.get_metric_history(rid, ui_name(key))]
        assert steps == list(range(EPOCHS)), (key, steps)
    # Final test metrics, once.
    for key in ("test_loss", "test_r", "test_r2", "test_mae", "test_rmse", "test_spearman"):
        hist = c.get_metric_history(rid, ui_name(key))
        assert len(hist) == 1 and np.isfinite(hist[0].value), key
    m = run.data.metrics
    assert -1 <= m[ui_name("test_r")] <= 1 and m[ui_name("test_mae")] > 0 and m[ui_name("test_rmse")] >= m[ui_name("test_mae")]
    # Artifacts: config, best and last checkpoints, parity plot, predictions.
    arts = artifact_paths(c, rid)
    assert "config.yaml" in arts
    assert "checkpoints/last.ckpt" in arts
    assert any(a.startswith("checkpoints/best-epoch=") for a in arts)
    assert "symmetry/symmetry_angles.png" in arts
    # The learned distribution over O(3), per epoch.
    for key in ("sym_rot_mean_x", "sym_rot_std_z", "sym_reflect_p", "sym_angle_mean"):
        steps = [m.step for m in c.get_metric_history(rid, ui_name(key))]
        assert steps == list(range(EPOCHS)), (key, steps)
    assert 0 < m[ui_name("sym_reflect_p")] < 1 and m[ui_name("sym_rot_std_x")] > 0
    # The "System metrics" tab: MLflow's monitor sampled the machine during the fit (smoke: every second).
    cpu = c.get_metric_history(rid, "system/cpu_utilization_percentage")
    assert len(cpu) >= 1 and all(0 <= h.value <= 100 * os.cpu_count() for h in cpu)
    assert "system/system_memory_usage_megabytes" in m
    # last.ckpt is the last epoch, whichever epoch was best.
    ckpt_dir = Path(smoke["root"]) / "checkpoints" / "smoke"
    import torch

    assert torch.load(ckpt_dir / "last.ckpt", weights_only=False, map_location="cpu")["epoch"] == EPOCHS - 1
    for a in ("test/parity.png", "test/predictions.csv", "test/predictions.extxyz"):
        assert a in arts
    # The tested (validation-selected) checkpoint as the run's one MLflow logged model (the UI's "Logged
    # models"), with its config, an input example and the test metrics.
    models = [lm for lm in c.search_logged_models([run.info.experiment_id]) if lm.source_run_id == rid]
    assert len(models) == 1 and str(models[0].status) == "READY", models
    lm = models[0]
    files = {f.path for f in c.list_logged_model_artifacts(lm.model_id)}
    best = next(ckpt_dir.glob("best-epoch=*.ckpt")).name
    assert files == {best, "config.yaml", "input_example.extxyz"}, files
    assert lm.params["checkpoint"] == best and lm.params["selected_epoch"] == str(int(best[len("best-epoch="):-len(".ckpt")]))
    assert [o.model_id for o in run.outputs.model_outputs] == [lm.model_id]
    assert {m.key: m.value for m in lm.metrics}[ui_name("test_r")] == m[ui_name("test_r")]
    from ase.io import read
    from mlflow.artifacts import download_artifacts

    tested = read(ckpt_dir / "test" / "predictions.extxyz", index=0)  # the first test glass
    given = read(download_artifacts(artifact_uri=f"{lm.artifact_location}/input_example.extxyz", dst_path=str(smoke["root"])))
    assert len(given) == len(tested) and (given.numbers == tested.numbers).all() and "eb" not in given.arrays


def test_predictions_artifacts_match_test_metrics(smoke):
    from ase.io import read

    c, run = only_run(smoke["root"])
    local = Path(c.download_artifacts(run.info.run_id, "test", str(Path(smoke["root"]) / "dl")))
    rows = np.genfromtxt(local / "predictions.csv", delimiter=",", names=True, dtype=None, encoding=None)
    y, p = rows["eb_ev"].astype(float), rows["eb_pred_ev"].astype(float)
    assert len(y) == 2 * 64  # two synthetic test glasses of 64 atoms
    m = run.data.metrics
    assert np.corrcoef(y, p)[0, 1] == pytest.approx(m[ui_name("test_r")], abs=2e-3)
    assert np.mean(np.abs(p - y)) == pytest.approx(m[ui_name("test_mae")], rel=2e-3)
    frames = read(local / "predictions.extxyz", index=":")
    assert len(frames) == 2
    pred = np.concatenate([f.arrays["eb_pred"] for f in frames])
    np.testing.assert_allclose(pred, p, atol=1e-5)
    assert set(frames[0].get_chemical_symbols()) <= {"Cu", "Zr"}
    png = (local / "parity.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_same_config_and_seed_give_same_metrics(smoke, tmp_path_factory):
    again = smoke_fit(tmp_path_factory, "smoke-b")
    assert again["rc"] == 0, again["stderr"][-3000:]
    a, b = metrics_of(smoke["root"]), metrics_of(again["root"])
    assert a.keys() == b.keys() and len(a) >= 12
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-7), k


def test_plain_epoch_lines_when_not_a_tty(smoke):
    lines = [ln for ln in smoke["stdout"].splitlines() if ln.startswith("epoch ")]
    assert len(lines) == EPOCHS
    assert "val_loss" in lines[0] and "val_r" in lines[0]
    assert "it/s" not in smoke["stdout"] + smoke["stderr"]  # no progress bar


def test_checkpoint_alone_predicts_ev(smoke):
    import torch
    from torch_geometric.data import Batch

    from mgglass.data import load_graph
    from mgglass.task import EBTask

    ckpt = Path(smoke["root"]) / "checkpoints" / "smoke"
    best = next(ckpt.glob("best-epoch=*.ckpt"))
    task = EBTask.load_from_checkpoint(best, map_location="cpu")  # nothing else given
    assert float(task.y_std) > 0
    rows = np.genfromtxt(ckpt / "test" / "predictions.csv", delimiter=",", names=True, dtype=None, encoding=None)
    synth = Path(smoke["root"]).parent / "cache" / "synthetic" / "n64_s0"
    g = load_graph(synth / "test0.xyz", cache=False)
    task.eval()
    with torch.no_grad():
        pred = task.predict_ev(Batch.from_data_list([g])).numpy()
    np.testing.assert_allclose(pred, rows["eb_pred_ev"][: len(pred)].astype(float), atol=1e-5)


def test_validate_and_test_entry_points_on_best_checkpoint(smoke, capsys, monkeypatch):
    from mgglass.cli import evaluate_main

    monkeypatch.setenv("MGGLASS_CACHE_DIR", str(Path(smoke["root"]).parent / "cache"))
    ckpt = Path(smoke["root"]) / "checkpoints" / "smoke"
    best = str(next(ckpt.glob("best-epoch=*.ckpt")))
    capsys.readouterr()
    assert evaluate_main("test", ["--ckpt_path", best]) == 0  # config: the run folder's config.yaml
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    m = metrics_of(smoke["root"])
    for k in ("test_r", "test_mae", "test_rmse", "test_spearman"):
        assert got[k] == pytest.approx(m[k], rel=1e-5, abs=1e-6), k
    out = Path(smoke["root"]) / "pred-out"
    assert evaluate_main("test", ["--ckpt_path", best, "--out", str(out)]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["test_r"] == pytest.approx(got["test_r"], rel=1e-6)
    written = np.genfromtxt(out / "predictions.csv", delimiter=",", names=True, dtype=None, encoding=None)
    logged = np.genfromtxt(ckpt / "test" / "predictions.csv", delimiter=",", names=True, dtype=None, encoding=None)
    np.testing.assert_allclose(written["eb_pred_ev"].astype(float), logged["eb_pred_ev"].astype(float), atol=1e-6)
    assert (out / "predictions.extxyz").is_file() and (out / "parity.png").is_file()
    assert evaluate_main("validate", ["--ckpt_path", best, "--config", SMOKE]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # The best checkpoint is the best-val_r epoch, and it carries the batch-norm statistics that
    # validation used: evaluating it again gives the logged numbers, without recalibrating.
    c = client_for(smoke["root"])
    rid = only_run(smoke["root"])[1].info.run_id
    hist = c.get_metric_history(rid, ui_name("val_r"))
    best_epoch = max(hist, key=lambda h: h.value).step
    assert best.endswith(f"best-epoch={best_epoch:03d}.ckpt")
    assert got["val_r"] == pytest.approx(max(h.value for h in hist), rel=1e-5)
    mae = {h.step: h.value for h in c.get_metric_history(rid, ui_name("val_mae"))}
    assert got["val_mae"] == pytest.approx(mae[best_epoch], rel=1e-5)
    # A file that is no checkpoint, with a --config: one line (it was the Trainer's traceback).
    bad = Path(smoke["root"]) / "notes.ckpt"
    bad.write_text("not a checkpoint")
    assert evaluate_main("test", ["--ckpt_path", str(bad), "--config", SMOKE]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notes.ckpt: not a loadable mgglass checkpoint" in err[0], err
    assert evaluate_main("test", ["--ckpt_path", str(ckpt / "missing.ckpt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    # A glass that is not there, found once the Trainer is built: still one line, without its banner.
    gone = Path(smoke["root"]) / "gone"
    p = run_cli("mgglass.test", ["--ckpt_path", best, f"--data.root={gone}", "--data.test=[nowhere.xyz]"], Path(smoke["root"]), timeout=120)
    err = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(err) == 1 and "nowhere.xyz: no such file" in err[0], p.stderr


def test_a_checkpoint_is_scored_without_its_training_glasses(smoke, tmp_path, capsys, monkeypatch):
    """validate/test read only the split they score, normalised as the checkpoint was: a folder
    holding only the test (or validation) glasses gives the logged numbers, loss included."""
    from mgglass.cli import evaluate_main
    from mgglass.data.download import cache_dir

    monkeypatch.setenv("MGGLASS_CACHE_DIR", str(Path(smoke["root"]).parent / "cache"))
    best = str(next((Path(smoke["root"]) / "checkpoints" / "smoke").glob("best-epoch=*.ckpt")))
    synthetic = cache_dir() / "synthetic" / "n64_s0"  # experiments/smoke.yaml's glasses
    for split, names in (("test", ["test0.xyz", "test1.xyz"]), ("val", ["val0.xyz", "val1.xyz"])):
        alone = tmp_path / split
        alone.mkdir()
        for name in names:
            (alone / name).write_bytes((synthetic / name).read_bytes())
        capsys.readouterr()
        assert evaluate_main("test" if split == "test" else "validate", ["--ckpt_path", best, f"--data.root={alone}"]) == 0, capsys.readouterr().err
        got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        if split == "test":
            logged = metrics_of(smoke["root"])
        else:  # the logged validation of the best checkpoint's epoch
            c, run = only_run(smoke["root"])
            epoch = int(best.rsplit("=", 1)[1].split(".")[0])
            logged = {k: next(h.value for h in c.get_metric_history(run.info.run_id, ui_name(k)) if h.step == epoch)
                      for k in ("val_loss", "val_r", "val_mae")}
        for k in (f"{split}_loss", f"{split}_r", f"{split}_mae"):
            assert got[k] == pytest.approx(logged[k], rel=1e-5, abs=1e-6), k
    # Two glasses of one file name, named by their paths: two glasses in the outputs, told apart by folder.
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "final.xyz").write_bytes((synthetic / f"test{folder == 'b':d}.xyz").read_bytes())
    out = tmp_path / "out"
    argv = ["--ckpt_path", best, f"--data.test=[{tmp_path / 'a' / 'final.xyz'},{tmp_path / 'b' / 'final.xyz'}]", "--out", str(out)]
    assert evaluate_main("test", argv) == 0, capsys.readouterr().err
    written = np.genfromtxt(out / "predictions.csv", delimiter=",", names=True, dtype=None, encoding=None)
    assert sorted(set(written["glass"])) == ["a/final.xyz", "b/final.xyz"]


def test_auxiliary_loss_is_logged_and_the_checkpoint_predicts_without_them(tmp_path_factory, capsys, monkeypatch):
    """--data.aux_targets=[cn]: the task gets the same list (linked), the auxiliary loss is logged per
    epoch, and the checkpoint predicts the test split like any other. (That the auxiliary head learns
    is test_task's: over 6 smoke epochs the loss ended 0.78-0.98 of its start, too close to 1.)"""
    from mgglass.cli import evaluate_main

    # The |x| branch: the synthetic first-shell count cn is a function of the lengths.
    extra = ("--data.aux_targets=[cn]", "--model.aux_weight=1.0", "--model.net.init_args.edge_lengths=true")
    r = smoke_fit(tmp_path_factory, "smoke-aux", *extra)
    assert r["rc"] == 0, r["stderr"][-3000:]
    c, run = only_run(r["root"])
    aux = [h.value for h in c.get_metric_history(run.info.run_id, ui_name("train_aux_loss"))]
    # The MSE of standardised cn, once per epoch: near 1 at the start, finite and positive throughout.
    assert len(aux) == EPOCHS and all(0 < a < 3 for a in aux), aux
    ckpt = Path(r["root"]) / "checkpoints" / "smoke"
    cfg = yaml.safe_load((ckpt / "config.yaml").read_text())
    assert cfg["data"]["aux_targets"] == ["cn"]
    monkeypatch.setenv("MGGLASS_CACHE_DIR", str(Path(r["root"]).parent / "cache"))
    capsys.readouterr()
    assert evaluate_main("test", ["--ckpt_path", str(next(ckpt.glob("best-epoch=*.ckpt")))]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["test_r"] == pytest.approx(metrics_of(r["root"])["test_r"], rel=1e-5)


def test_print_config_is_fully_resolved(capsys):
    import yaml

    from mgglass.cli import build

    with pytest.raises(SystemExit) as e:
        build(["--config", SMOKE, "--print_config"])
    assert e.value.code in (0, None)
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["trainer"]["gradient_clip_val"] == 0.1  # from base.yaml
    assert cfg["model"]["optimizer"]["init_args"]["amsgrad"] is True
    assert cfg["model"]["net"]["init_args"]["k_eval"] == 2  # from smoke.yaml
    assert cfg["model"]["net"]["init_args"]["eval_seed"] == 0  # model default, resolved
    assert cfg["trainer"]["use_distributed_sampler"] is False
    assert cfg["checkpoint"]["monitor"] == "val_r" and cfg["early_stopping"]["monitor"] == "val_r"
    assert cfg["checkpoint"]["mode"] == "max" and cfg["early_stopping"]["mode"] == "max"
    assert cfg["model"]["scheduler_monitor"] == "val_r"
    assert cfg["model"]["scheduler"]["init_args"]["mode"] == "max"
    assert cfg["recalibrate_bn"]["enabled"] is True


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model.net.class_path=mgglass.models.nope.Nope"], "unknown model class_path 'mgglass.models.nope.Nope'"),
        (["--trainer.max_epoch=3"], "--trainer.max_epoch"),
        (["--data.root=/nonexistent/glasses"], "/nonexistent/glasses/train0.xyz: no such file"),
        (["--model.net.init_args.hidden=abc"], "hidden"),
        # Lightning takes it; the fused kernels then fail in the first step
        (["--trainer.precision=bf16-mixed"], "trainer.precision=bf16-mixed: mgglass's models run in float32 only"),
    ],
    ids=["unknown-model", "misspelled-key", "missing-data", "bad-value", "precision"],
)
def test_config_errors_are_one_line_before_training(args, needle, tmp_path, capsys, monkeypatch):
    from mgglass.fit import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rc = main(["--config", SMOKE, f"--tracking.root={tmp_path}", *args])
    out = capsys.readouterr()
    assert rc != 0
    err = [ln for ln in out.err.splitlines() if ln.startswith("mgglass.fit: error:")]
    assert len(err) == 1 and needle in err[0], out.err
    assert not (tmp_path / "mlflow.db").exists()  # nothing started
    assert "epoch " not in out.out


def test_config_error_exit_from_the_shell_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_epoch: 3\n")
    p = run_cli("mgglass.fit", ["--config", SMOKE, "--config", str(bad)], tmp_path, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith(f"mgglass.fit: error: {bad}: ")
    assert "max_epoch" in p.stderr and "Traceback" not in p.stderr


SLOW_TO_BUILD = {"dimenet_pp"}
OWN_RECIPE = {"symgnn"}  # configs with their own optimisation recipe (README, "Results"); the rest use the paper's  # ~10 s of sympy basis set-up in its constructor: parsed only


def test_every_experiment_config_builds(capsys):
    """All paper configs resolve (class paths and init args checked against the models) and build."""
    import yaml

    from mgglass.cli import build
    from mgglass.models import REGISTRY

    # explain.yaml configures mgglass.explain (tests/test_explain.py), not a fit.
    names = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml") if p.stem not in ("base", "smoke", "explain"))
    assert set(REGISTRY) <= set(names)
    failures = []
    for n in names:
        if n in SLOW_TO_BUILD:
            capsys.readouterr()
            with pytest.raises(SystemExit):
                build(["--config", f"experiments/{n}.yaml", "--print_config"])
            if yaml.safe_load(capsys.readouterr().out)["model"]["net"]["class_path"] != REGISTRY[n][0]:
                failures.append(f"{n}: class_path differs from the registry")
            continue
        try:  # no data is read before fit
            cli = build(["--config", f"experiments/{n}.yaml"])
        except Exception as e:  # noqa: BLE001 - collect every broken config
            failures.append(f"{n}: {type(e).__name__}: {e}")
            continue
        if REGISTRY.get(n) and cli.config.model.net.class_path != REGISTRY[n][0]:
            failures.append(f"{n}: class_path {cli.config.model.net.class_path} != registry {REGISTRY[n][0]}")
        if sum(p.numel() for p in cli.model.net.parameters()) == 0:
            failures.append(f"{n}: model has no parameters")
        paper = cli.config.trainer.gradient_clip_val == 0.1 and cli.config.model.optimizer.init_args.lr == 1e-4
        if paper == (n in OWN_RECIPE):
            failures.append(f"{n}: paper optimisation defaults {'' if paper else 'not '}applied")
    assert not failures, failures


@pytest.mark.parametrize("recipe", [[], ["symgnn"]])
def test_symgnn_configs_build_the_network_they_name(recipe):
    """Each SymGNN-family config builds its own network, alone and as make reproduce RECIPE=
    experiments/symgnn.yaml layers it on the default's: the default's |x| branch, cardinality and
    learned distribution reach only SymGNN itself (symgnn_fixed.yaml once built a learned SymGNN)."""
    from mgglass.cli import build
    from mgglass.models.egat import EGATLayer

    expected = {  # config: (distribution of the symmetriser, or None without one; |x| branch; cardinality)
        "symgnn": ("learned", True, {0.03}), "symgnn_paper": ("learned", False, {0.0}),
        "symgnn_fixed": ("fixed", False, {0.0}), "symgnn_nosym": ("none", False, {0.0}),
        "egat_len": (None, False, {0.0}), "augment": ("none", False, {0.0}),
    }
    got = {}
    for name in expected:
        cli = build([a for c in [*recipe, name] for a in ("--config", f"experiments/{c}.yaml")])
        mods = list(cli.model.net.modules())
        dist = {m.distribution for m in mods if isinstance(getattr(m, "distribution", None), str)}
        branch = any(getattr(m, "length_encoder", None) is not None for m in mods)
        card = {m.cardinality for m in mods if isinstance(m, EGATLayer)}
        got[name] = (dist.pop() if len(dist) == 1 else dist or None, branch, card)
    assert got == expected


def test_a_source_naming_another_net_class_starts_that_net_afresh(tmp_path, capsys):
    """Layered configs merge key by key, except that naming a different net class drops the earlier
    class's init args (jsonargparse would keep every one the new class accepts)."""
    import yaml

    from mgglass.cli import build

    net = lambda cls, **a: f"model:\n  net:\n    class_path: mgglass.models.symgnn.{cls}\n    init_args: {a}\n"
    files = {"a": net("SymGNN", hidden=8, k_eval=4, decoder_layers=2), "b": net("EGATLength", hidden=8),
             "c": net("SymGNN", dropout=0.1)}
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text.replace("'", ""))
    conf = lambda *n: [a for x in n for a in (("--config", str(tmp_path / f"{x}.yaml")) if len(x) == 1 else (x,))]
    args = lambda *n: vars(build(conf(*n), parse_only=True).config.model.net.init_args)

    got = args("a", "b")  # EGATLength: its own hidden, the class defaults for the rest
    assert (got["hidden"], got["k_eval"], got["decoder_layers"]) == (8, 16, 4)
    got = args("a", "b", "--model.net.init_args.k_eval=5")  # later overrides still apply
    assert (got["hidden"], got["k_eval"], got["decoder_layers"]) == (8, 5, 4)
    got = args("a", "c")  # the same class merges as before
    assert (got["hidden"], got["k_eval"], got["decoder_layers"], got["dropout"]) == (8, 4, 2, 0.1)
    got = args("a", "--model.net.class_path=mgglass.models.symgnn.SymGNNFixed")
    assert (got["hidden"], got["k_eval"]) == (32, 16)
    with pytest.raises(SystemExit):
        build([*conf("a", "b"), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)["model"]["net"]
    assert (printed["class_path"].rsplit(".", 1)[-1], printed["init_args"]["decoder_layers"]) == ("EGATLength", 4)


def test_overrides_tag_keeps_what_changes_the_training_and_drops_bookkeeping():
    from mgglass.cli.fitting import config_overrides

    argv = ["--config", "experiments/symgnn.yaml", "--model.offset_weight=0.1", "--seed_everything=2",
            "--tracking.run_name", "x-s2", "--trainer.max_epochs", "5", "--ckpt_path=last", "--checkpoint.dirpath=/tmp/c",
            "--model.net.init_args.dropout=0.15"]
    assert config_overrides(argv) == "model.offset_weight=0.1 trainer.max_epochs=5 model.net.init_args.dropout=0.15"
    assert config_overrides(["--config=a.yaml", "--seed_everything", "0"]) == ""
