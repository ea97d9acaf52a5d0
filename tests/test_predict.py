"""python -m mgglass.predict: chunked prediction equals whole-glass prediction, the command predicts
glasses in no split from a checkpoint or a run id, writes extxyz + CSV, reports metrics for labelled
inputs and a transform spread for SymGNN, and refuses bad inputs in one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import as_after_training
from test_fit import only_run, run_cli, smoke_fit

from mgglass.tracking import ui_name


@pytest.fixture(scope="module")
def small_task():
    from mgglass.models.symgnn import SymGNN
    from mgglass.task import EBTask

    torch.manual_seed(0)
    net = SymGNN(hidden=8, heads=(2, 1), dropout=0.0, k_train=1, k_eval=2, decoder_layers=2)
    task = EBTask(net)
    as_after_training(net)
    return task.eval()


@pytest.mark.parametrize("path", ["by_dst", "halo"])
def test_chunked_prediction_equals_whole_glass(small_task, path, monkeypatch):
    from mgglass.data import glass_to_data, make_glass
    from mgglass.inference import _subgraph, predict_glass, spatial_cells
    from mgglass.models.symgnn import SymGNN

    data = glass_to_data(make_glass(1500, seed=3))
    whole = predict_glass(small_task, data)
    calls = []
    if path == "halo":  # what models without predict_by_dst get
        monkeypatch.setattr(SymGNN, "predict_by_dst", None)
    else:  # SymGNN: layer by layer over 25 ranges of 60 atoms
        by_dst = SymGNN.predict_by_dst
        monkeypatch.setattr(SymGNN, "predict_by_dst", lambda self, b, n: calls.append(n) or by_dst(self, b, n))
    chunked = predict_glass(small_task, data, chunk_atoms=60)
    assert calls == ([60] if path == "by_dst" else [])
    cells = spatial_cells(data, 60)
    assert len(cells) > 8 and sum(len(c) for c in cells) == data.num_nodes
    assert len(torch.unique(torch.cat(cells))) == data.num_nodes  # every atom predicted once
    # The halos are real subsets of the glass, so the test exercises the chunking.
    sizes = [_subgraph(data, c, 2)[0].num_nodes for c in cells]
    assert max(sizes) < data.num_nodes
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=2e-5)
    # One hop too few would not be exact: the halo depth matters.
    from torch_geometric.data import Batch

    sub, mapping = _subgraph(data, cells[0], 1)
    short = small_task.predict_ev(Batch.from_data_list([sub]))[mapping].double().numpy()
    assert np.abs(short - whole[cells[0].numpy()]).max() > 1e-4


def test_spatial_order_renumbers_atoms_and_keeps_the_predictions(small_task):
    from mgglass.data import glass_to_data, make_glass
    from mgglass.data.order import spatially_ordered
    from mgglass.inference import predict_glass

    data = glass_to_data(make_glass(1500, seed=4))
    ordered, perm = spatially_ordered(data)
    assert sorted(perm.tolist()) == list(range(data.num_nodes))
    torch.testing.assert_close(ordered.pos, data.pos[perm])
    dst = ordered.edge_index[1]
    assert bool((dst[1:] >= dst[:-1]).all())  # still sorted by dst, as the model's CSR needs
    # The same edges, each with its own vector: renumbered (src, dst) -> vector matches the original.
    new_id = torch.empty_like(perm)
    new_id[perm] = torch.arange(len(perm))
    before = {(int(a), int(b)): v for (a, b), v in zip(new_id[data.edge_index].t().tolist(), data.edge_vec.tolist())}
    after = {(int(a), int(b)): v for (a, b), v in zip(ordered.edge_index.t().tolist(), ordered.edge_vec.tolist())}
    assert before == after
    # Neighbours are now close in numbering (what makes the gathers cache-friendly).
    gap = lambda g: (g.edge_index[0] - g.edge_index[1]).abs().double().median()
    assert gap(ordered) < 0.25 * gap(data)
    plain = predict_glass(small_task, data, reorder_above=10**9)
    np.testing.assert_allclose(predict_glass(small_task, data, reorder_above=0), plain, rtol=0, atol=2e-5)
    np.testing.assert_allclose(predict_glass(small_task, data, chunk_atoms=200, reorder_above=0), plain, rtol=0, atol=2e-5)
    assert np.abs(plain - plain[perm.numpy()]).max() > 1e-3  # so a missing un-permutation would show


def test_large_glass_is_read_in_spatial_order_and_written_in_the_files(small_task, tmp_path):
    # mgglass.predict orders a large glass when it reads it (so it holds one graph, not two, while
    # predicting); the files it writes keep the input's atom order and the whole-glass predictions.
    from ase.io import read, write

    from mgglass.data import glass_to_data, make_glass
    from mgglass.data.order import REORDER_ABOVE
    from mgglass.inference import predict_glass
    from mgglass.predict import GlassFiles, predict_files

    glass = make_glass(REORDER_ABOVE + 500, seed=4)
    path = tmp_path / "big.extxyz"
    write(path, glass.to_atoms(), format="extxyz")
    hp = {"cutoff": 5.0, "species": ["Cu", "Zr"], "self_loops": False}
    read_as = GlassFiles([path], hp)[0]
    assert read_as.file_order.shape == (glass.positions.shape[0],)  # what the command predicts on
    out = tmp_path / "pred.extxyz"
    summary = predict_files(small_task, [path], hp, out)
    frame = read(out)
    np.testing.assert_array_equal(frame.positions, read(path).positions)  # same atoms, same order, the file's float64 coordinates
    np.testing.assert_array_equal(frame.cell[:], read(path).cell[:])
    np.testing.assert_allclose(frame.arrays["eb"], glass.labels, rtol=0, atol=1e-6)
    expected = predict_glass(small_task, glass_to_data(glass), reorder_above=10**9)  # no reordering at all
    np.testing.assert_allclose(frame.arrays["eb_pred"], expected, rtol=0, atol=2e-5)
    assert summary["pooled_r"] == pytest.approx(float(np.corrcoef(glass.labels, expected)[0, 1]), abs=1e-4)


def test_error_ranking_counts_overlap():
    from mgglass.task import uncertainty_scores as error_ranking

    y = np.zeros(100)
    p = np.linspace(0, 1, 100)  # error grows with the index
    assert error_ranking(y, p, std=p.copy())["top10_overlap"] == 1.0
    assert error_ranking(y, p, std=-p)["top10_overlap"] == 0.0


# -- the command on the smoke fit ------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    r = smoke_fit(tmp_path_factory, "smoke")
    assert r["rc"] == 0, r["stderr"][-2000:]
    root = Path(r["root"])
    synth = next((root.parent / "cache" / "synthetic").glob("n64_s0"))
    return {"root": root, "ckpt": next((root / "checkpoints" / "smoke").glob("best-epoch=*.ckpt")), "synth": synth, "base": root}


def _read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_predict_writes_extxyz_csv_and_metrics_of_labelled_glasses(smoke, tmp_path):
    from ase.io import read

    out = tmp_path / "pred.extxyz"
    tests = [str(smoke["synth"] / "test0.xyz"), str(smoke["synth"] / "test1.xyz")]
    p = run_cli("mgglass.predict", ["--ckpt_path", str(smoke["ckpt"]), "--input", *tests, "--output", str(out), "--samples", "4"], smoke["base"])
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    frames = read(out, index=":")
    assert len(frames) == 2 and all(len(a) == 64 for a in frames)
    for a in frames:
        assert {"eb", "eb_pred", "eb_std"} <= set(a.arrays)
        assert np.all(a.arrays["eb_std"] >= 0) and a.arrays["eb_std"].max() > 0
    rows = _read_csv(out.with_suffix(".csv"))
    assert len(rows) == 128 and set(rows[0]) == {"glass", "atom", "species", "eb_ev", "eb_pred_ev", "eb_std_ev"}
    assert float(rows[0]["eb_pred_ev"]) == pytest.approx(frames[0].arrays["eb_pred"][0], abs=1e-5)
    # The same checkpoint on the same glasses: the fit's logged test metrics.
    _, run = only_run(smoke["root"])
    assert summary["pooled_r"] == pytest.approx(run.data.metrics[ui_name("test_r")], abs=1e-4)
    assert summary["pooled_mae"] == pytest.approx(run.data.metrics[ui_name("test_mae")], abs=1e-4)
    assert set(summary["per_glass"]) == {"test0.xyz", "test1.xyz"}
    assert 0 <= summary["uncertainty"]["top10_overlap"] <= 1


def test_predict_from_run_id_folder_and_glob_agree(smoke, tmp_path):
    import shutil

    _, run = only_run(smoke["root"])
    folder = tmp_path / "glasses"
    folder.mkdir()
    for name in ("val0.xyz", "test0.xyz", "test1.xyz"):
        shutil.copy(smoke["synth"] / name, folder / name)
    a, b = tmp_path / "a.extxyz", tmp_path / "b.extxyz"
    p1 = run_cli("mgglass.predict", ["--run", run.info.run_id, "--tracking_root", str(smoke["root"]),
                                     "--input", str(folder), "--output", str(a)], smoke["base"])
    assert p1.returncode == 0, p1.stderr[-2000:]
    p2 = run_cli("mgglass.predict", ["--ckpt_path", str(smoke["ckpt"]), "--input", str(folder / "*.xyz"),
                                     "--output", str(b), "--chunk_atoms", "16"], smoke["base"])
    assert p2.returncode == 0, p2.stderr[-2000:]
    ra, rb = _read_csv(a.with_suffix(".csv")), _read_csv(b.with_suffix(".csv"))
    assert len(ra) == len(rb) == 3 * 64 and {r["glass"] for r in ra} == {"val0.xyz", "test0.xyz", "test1.xyz"}
    np.testing.assert_allclose([float(r["eb_pred_ev"]) for r in ra], [float(r["eb_pred_ev"]) for r in rb], atol=2e-5)


def test_predict_unlabelled_glass(smoke, tmp_path):
    """A glass without labels (the usual case for new glasses) is predicted; no metrics are claimed."""
    from ase.io import read, write

    atoms = read(smoke["synth"] / "test0.xyz")
    del atoms.arrays["eb"]
    write(tmp_path / "new.extxyz", atoms)
    out = tmp_path / "new_pred.extxyz"
    p = run_cli("mgglass.predict", ["--ckpt_path", str(smoke["ckpt"]), "--input", str(tmp_path / "new.extxyz"), "--output", str(out)], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert "pooled_r" not in summary and summary["glasses"] == 1
    frame = read(out)
    assert "eb_pred" in frame.arrays and "eb" not in frame.arrays and np.isfinite(frame.arrays["eb_pred"]).all()



def test_glass_names_tell_inputs_of_one_file_name_apart(tmp_path):
    from mgglass.predict import expand_inputs, glass_names

    for d in ("x/run1", "y/run1", "run2"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "final.xyz").write_text("")
    (tmp_path / "run2" / "other.xyz").write_text("")
    paths = expand_inputs([str(tmp_path / "x/run1/final.xyz"), str(tmp_path / "run2"), str(tmp_path / "y/run1/final.xyz"),
                           str(tmp_path / "run2/../run2/final.xyz")])  # the last: a file already named
    assert glass_names(paths) == ["x/run1/final.xyz", "run2/final.xyz", "other.xyz", "y/run1/final.xyz"]


def test_predict_keeps_glasses_of_one_file_name_apart(smoke, tmp_path):
    """Inputs that share a file name (run1/final.extxyz, run2/final.extxyz) are told apart in the CSV and
    the metrics (they were one key: the second glass's metrics replaced the first's)."""
    import shutil

    for d, name in (("a", "test0.xyz"), ("b", "test1.xyz")):
        (tmp_path / d).mkdir()
        shutil.copy(smoke["synth"] / name, tmp_path / d / "glass.xyz")
    out = tmp_path / "pred.extxyz"
    p = run_cli("mgglass.predict", ["--ckpt_path", str(smoke["ckpt"]), "--input", str(tmp_path / "a/glass.xyz"),
                                    str(tmp_path / "b/glass.xyz"), "--output", str(out)], smoke["base"])
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    rows = _read_csv(out.with_suffix(".csv"))
    assert [r["glass"] for r in rows] == ["a/glass.xyz"] * 64 + ["b/glass.xyz"] * 64
    assert set(summary["per_glass"]) == {"a/glass.xyz", "b/glass.xyz"} and summary["glasses"] == 2
    y, pred = (np.array([float(r[k]) for r in rows]) for k in ("eb_ev", "eb_pred_ev"))
    assert summary["pooled_r"] == pytest.approx(np.corrcoef(y, pred)[0, 1], abs=1e-4)  # over both glasses
    assert summary["per_glass"]["a/glass.xyz"]["r"] == pytest.approx(np.corrcoef(y[:64], pred[:64])[0, 1], abs=1e-4)

def test_predict_level_moves_each_glass_onto_the_line_of_the_glasses_the_fit_saw(smoke, tmp_path):
    """--level cn: the line mean EB = a + b · mean cn over the smoke fit's training and validation
    glasses; each glass's predictions move by one shift onto it, and eb_pred_network keeps the network's."""
    from mgglass.data import read_glass

    hp = torch.load(smoke["ckpt"], map_location="cpu", weights_only=False)["datamodule_hyper_parameters"]
    seen = [read_glass(smoke["synth"] / name) for name in [*hp["train"], *hp["val"]]]
    b, a = np.polyfit([g.extras["cn"].mean() for g in seen], [g.labels.mean() for g in seen], 1)
    inputs = {name: read_glass(smoke["synth"] / name) for name in ("val0.xyz", "train0.xyz")}
    out = tmp_path / "pred.extxyz"
    p = run_cli("mgglass.predict", ["--ckpt_path", str(smoke["ckpt"]), "--input", *(str(smoke["synth"] / n) for n in inputs),
                                    "--output", str(out), "--level", "cn"], smoke["base"])
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["level"]["line"]["slope"] == pytest.approx(b) and summary["level"]["line"]["intercept_ev"] == pytest.approx(a)
    assert len(summary["level"]["line"]["glasses"]) == len(seen)
    rows = _read_csv(out.with_suffix(".csv"))
    for name, glass in inputs.items():
        pred = np.array([float(r["eb_pred_ev"]) for r in rows if r["glass"] == name])
        network = np.array([float(r["eb_pred_network_ev"]) for r in rows if r["glass"] == name])
        placed = summary["level"]["per_glass"][name]
        assert pred.mean() == pytest.approx(a + b * glass.extras["cn"].mean(), abs=1e-5)
        np.testing.assert_allclose(pred - network, placed["shift_ev"], atol=2e-6)
        assert placed["inside_fitted_range"]


def test_predict_level_needs_no_glass_file_of_the_fit(smoke, tmp_path):
    """A checkpoint keeps a summary of the glasses its fit saw, so a fit on private glasses places a
    level where those files are not; a checkpoint without it (written before 2026-12-06) reads the
    files, and says so in one line when they are gone."""
    ckpt = torch.load(smoke["ckpt"], map_location="cpu", weights_only=False)
    ckpt["datamodule_hyper_parameters"]["root"] = str(tmp_path / "gone")  # the fit's glasses are not here
    torch.save(ckpt, tmp_path / "moved.ckpt")
    del ckpt["GlassDataModule"]["glass_summaries"]
    torch.save(ckpt, tmp_path / "old.ckpt")

    def level(ckpt_path):
        out = tmp_path / f"{ckpt_path.stem}.extxyz"
        return run_cli("mgglass.predict", ["--ckpt_path", str(ckpt_path), "--input", str(smoke["synth"] / "val0.xyz"),
                                           "--output", str(out), "--level", "cn"], tmp_path)

    here, moved, old = level(smoke["ckpt"]), level(tmp_path / "moved.ckpt"), level(tmp_path / "old.ckpt")
    assert here.returncode == 0 and moved.returncode == 0, moved.stderr[-2000:]
    lines = [json.loads(p.stdout.strip().splitlines()[-1])["level"] for p in (here, moved)]
    assert lines[0] == lines[1]
    err = old.stderr.strip().splitlines()
    assert old.returncode == 2 and len(err) == 1 and "--level cn, over the glasses the fit saw:" in err[0] and "train0.xyz: no such file" in err[0], old.stderr


def test_predict_says_which_glasses_lie_outside_the_glasses_the_fit_saw(smoke, tmp_path):
    """Without --level, a glass whose mean pot lies beyond the fit's glasses' (from the summaries in the
    checkpoint) gets one line on stderr, and the JSON line says where each glass lies; a checkpoint
    without summaries, or glasses without pot, say nothing."""
    from ase.io import read, write

    ckpt = torch.load(smoke["ckpt"], map_location="cpu", weights_only=False)
    summaries = ckpt["GlassDataModule"]["glass_summaries"]
    for s in summaries.values():
        s["means"]["pot"] = s["means"]["cn"]  # the synthetic glasses' cn stands for the released pot
    torch.save(ckpt, tmp_path / "pot.ckpt")
    del ckpt["GlassDataModule"]["glass_summaries"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    means = [s["means"]["pot"] for s in summaries.values()]
    for name, level in (("inside", (min(means) + max(means)) / 2), ("beyond", 2 * max(means) - min(means) + 1.0)):
        atoms = read(smoke["synth"] / "val0.xyz")
        atoms.arrays["pot"] = atoms.arrays["cn"] - atoms.arrays["cn"].mean() + level
        write(tmp_path / f"{name}.extxyz", atoms)
    inputs = [str(tmp_path / "inside.extxyz"), str(tmp_path / "beyond.extxyz"), str(smoke["synth"] / "val0.xyz")]

    def predict(ckpt_name):
        return run_cli("mgglass.predict", ["--ckpt_path", str(tmp_path / ckpt_name), "--input", *inputs,
                                           "--output", str(tmp_path / f"{ckpt_name}.extxyz")], tmp_path)

    p = predict("pot.ckpt")
    assert p.returncode == 0, p.stderr[-2000:]
    notices = [line for line in p.stderr.strip().splitlines() if "atoms predicted" not in line]
    assert len(notices) == 1 and "beyond.extxyz: mean pot" in notices[0] and "is outside the range of the glasses the fit saw" in notices[0]
    series = json.loads(p.stdout.strip().splitlines()[-1])["series"]
    assert series["key"] == "pot" and series["range"] == pytest.approx([min(means), max(means)])
    assert {n: g["inside"] for n, g in series["per_glass"].items()} == {"inside.extxyz": True, "beyond.extxyz": False}
    old = predict("old.ckpt")
    assert old.returncode == 0 and "outside" not in old.stderr and "series" not in json.loads(old.stdout.strip().splitlines()[-1])


def test_predict_level_refuses_a_glass_of_another_composition(smoke, tmp_path):
    from ase.io import read, write

    atoms = read(smoke["synth"] / "val0.xyz")
    atoms.numbers[:] = 29  # all Cu
    write(tmp_path / "cu.extxyz", atoms)
    out = tmp_path / "o.extxyz"
    p = run_cli("mgglass.predict", ["--ckpt_path", str(smoke["ckpt"]), "--input", str(tmp_path / "cu.extxyz"),
                                    "--output", str(out), "--level", "cn"], tmp_path)
    err = [line for line in p.stderr.strip().splitlines() if "atoms predicted" not in line]
    assert p.returncode == 2 and len(err) == 1 and "cu.extxyz: composition Cu100Zr0" in err[0], p.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--input", "nowhere.xyz"], "nowhere.xyz: no such file"),
        (["--input", "nowhere/*.xyz"], "pattern matches no file"),
        (["--run", "0123456789abcdef"], "run 0123456789abcdef: not found"),
        (["--output", "out.txt"], "expected an .extxyz"),
        (["--level", "pot"], "train0.xyz: no per-atom array 'pot'"),
    ],
)
def test_predict_bad_inputs_are_one_line_errors(smoke, tmp_path, args, expected):
    base = {"--input": str(smoke["synth"] / "test0.xyz"), "--output": str(tmp_path / "o.extxyz")}
    argv = ["--ckpt_path", str(smoke["ckpt"])] if "--run" not in args else ["--tracking_root", str(smoke["root"])]
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    for k, v in base.items():
        if k != "--run":
            argv += [k, v]
    if "--run" in base:
        argv += ["--run", base["--run"]]
    p = run_cli("mgglass.predict", argv, tmp_path)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(err) == 1 and expected in err[0], p.stderr
    assert not (tmp_path / "o.extxyz").exists()



@pytest.mark.parametrize("named", ["file", "folder"])
def test_predict_refuses_an_output_that_is_an_input(tmp_path, capsys, named):
    """--output naming an input glass (or a file in a folder given to --input) would replace that glass
    with the predictions: refused before anything is loaded."""
    from mgglass.predict import main

    glass = tmp_path / "g.extxyz"
    glass.write_text("the user's glass\n")
    code = main(["--ckpt_path", str(tmp_path / "never-read.ckpt"), "--input", str(glass if named == "file" else tmp_path),
                 "--output", str(glass)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"--output {glass}: is also an input glass" in err[0], err
    assert glass.read_text() == "the user's glass\n"
    # A folder that cannot be made (its parent is a file): one line before anything is loaded, not a
    # traceback after the prediction.
    code = main(["--ckpt_path", str(tmp_path / "never-read.ckpt"), "--input", str(glass), "--output", str(glass / "out.extxyz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"--output {glass}: cannot make this folder" in err[0], err

def test_predict_bad_glass_file_is_a_one_line_error_and_writes_nothing(smoke, tmp_path):
    (tmp_path / "broken.extxyz").write_text("3\nnot an extxyz header\nCu 0 0\n")
    out = tmp_path / "o.extxyz"
    p = run_cli("mgglass.predict", ["--ckpt_path", str(smoke["ckpt"]), "--input", str(smoke["synth"] / "test0.xyz"),
                                    str(tmp_path / "broken.extxyz"), "--output", str(out)], tmp_path)
    err = [line for line in p.stderr.strip().splitlines() if "atoms predicted" not in line]
    assert p.returncode == 2 and len(err) == 1 and "broken.extxyz" in err[0], p.stderr
    assert not out.exists() and not out.with_suffix(".csv").exists()


def test_latency_benchmark_reports_end_to_end_and_model_times(smoke, tmp_path):
    p = run_cli("mgglass.bench", ["latency", "--ckpt_path", str(smoke["ckpt"]), "--input", str(smoke["synth"] / "test0.xyz"), "--repeats", "2"], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    # Both times are reported; how they compare is the benchmark's business (a loaded machine reorders them).
    assert out["atoms"] == 64 and out["edges"] > 0 and out["end_to_end_s"] > 0 and out["model_only_s"] > 0


def test_latency_benchmark_times_several_checkpoints_in_turn(smoke, tmp_path):
    """One JSON line per checkpoint, in the order given; a checkpoint given twice is a one-line error."""
    import shutil

    twin = tmp_path / "twin.ckpt"
    shutil.copy(smoke["ckpt"], twin)
    args = ["latency", "--input", str(smoke["synth"] / "test0.xyz"), "--repeats", "1", "--ckpt_path"]
    p = run_cli("mgglass.bench", [*args, str(smoke["ckpt"]), str(twin)], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [json.loads(line) for line in p.stdout.strip().splitlines() if line.startswith("{")]
    assert [line["ckpt"] for line in lines] == [str(smoke["ckpt"]), str(twin)]
    assert all(line["atoms"] == 64 and line["end_to_end_s"] > 0 for line in lines)
    p = run_cli("mgglass.bench", [*args, str(twin), str(twin)], tmp_path)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(err) == 1 and "a checkpoint is given twice" in err[0], p.stderr


def test_a_device_that_is_no_device_is_named_as_such():
    from mgglass.task import PredictError, resolve_device

    assert resolve_device("cpu") == "cpu"
    for bad in ("bogus", "cpu:0", "cuda:x"):  # it was passed on, and the checkpoint blamed
        with pytest.raises(PredictError, match=f"--device {bad}: expected auto, cpu, cuda or cuda:N"):
            resolve_device(bad)


def test_a_run_looked_up_where_there_is_no_store_creates_none(tmp_path):
    from mgglass.task import PredictError
    from mgglass.tracking import resolve_checkpoints

    with pytest.raises(PredictError, match="run deadbeef: not found: no run folders .* and no MLflow store"):
        resolve_checkpoints("deadbeef", str(tmp_path / "none"))
    assert not (tmp_path / "none").exists()  # opening the store made the folder and an empty mlflow.db


def test_bench_scaling_times_the_command_file_to_file(smoke, tmp_path, cuzr_dir):
    """make bench's end-to-end column runs `python -m mgglass.predict` on the glass written as extxyz,
    reads that child's own peak memory, cleans up after itself, and reports a failure or a timeout in one line."""
    from mgglass.bench.scaling import run_cli

    row = run_cli(str(smoke["ckpt"]), "test0", 1, 300, tmp_path)
    assert set(row) == {"cli_s", "cli_peak_mb"}, row
    assert 0 < row["cli_s"] < 300 and 100 < row["cli_peak_mb"] < 8192
    bad = run_cli(str(tmp_path / "typo.ckpt"), "test0", 1, 300, tmp_path)
    assert set(bad) == {"cli_error"} and "typo.ckpt" in bad["cli_error"] and "\n" not in bad["cli_error"]
    assert run_cli(str(smoke["ckpt"]), "test0", 1, 1, tmp_path) == {"cli_error": "timed out after 1 s"}  # imports alone take longer
    assert not list(tmp_path.iterdir())  # the glass and the predictions are removed
