"""python -m mgglass.report: seeds of one recipe form one row (mean ± std), the values are the runs'
logged test metrics, the paper's number sits beside each model, and the physical baselines are the
correlations of the released per-atom quantities with the EB."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_fit import only_run, run_cli, smoke_fit

from mgglass.runtime import machine
from mgglass.tracking import ui_name


def test_group_name_drops_the_seed_suffix():
    from mgglass.report import group_name

    assert group_name("symgnn-s2") == group_name("symgnn_seed11") == "symgnn"
    assert group_name("symgnn-d0") == "symgnn-d0"


def test_metric_names_group_in_the_ui_and_old_runs_still_count(tmp_path):
    """MLflow groups charts by the prefix before "/": val_r is stored as val/r. Runs logged before
    that rename (val_r, test_r) are still read by the report."""
    from mlflow.tracking import MlflowClient

    from mgglass.report import collect

    assert [ui_name(k) for k in ("val_r", "train_loss", "test_mae", "sym_rot_std_x", "lr", "epoch_time_s", "val_r_ema")] == [
        "val/r", "train/loss", "test/mae", "sym/rot_std_x", "train/lr", "train/epoch_time_s", "val/r_ema"]
    assert ui_name("best_val_r") == "best_val_r" and ui_name("system/cpu_utilization_percentage") == "system/cpu_utilization_percentage"
    c = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/m.db")
    exp = c.create_experiment("e", artifact_location=str(tmp_path / "a"))
    old_run = {"model": "SymGNN", "seed": "0"}
    new_run = {"model": "M", "seed": "0", "config_files": "experiments/base.yaml,experiments/symgnn.yaml", "overrides": "model.offset_weight=0.1"}
    for names, test_r, tags in ((("val_r", "test_r", "test_r2", "test_mae"), 0.7, old_run),
                                (("val/r", "test/r", "test/r2", "test/mae"), 0.8, new_run)):
        rid = c.create_run(exp, run_name="m-s0", tags=tags).info.run_id
        c.log_param(rid, "model.net.init_args.distribution", "haar")
        for step, v in enumerate((0.3, 0.5, 0.4)):
            c.log_metric(rid, names[0], v, step=step)
        for name, v in zip(names[1:], (test_r, 0.4, 0.2)):
            c.log_metric(rid, name, v)
        c.set_terminated(rid)
    recs = sorted(collect(c, [exp]), key=lambda r: r["test_r"])
    assert [(r["test_r"], r["val_r"], r["epochs"], r["test_mae"]) for r in recs] == [(0.7, 0.5, 3, 0.2), (0.8, 0.5, 3, 0.2)]
    # The config column names the config files and the command line's overrides (fit's `overrides` tag).
    assert [r["configs"] for r in recs] == ["", "symgnn.yaml model.offset_weight=0.1"]
    # Only SymGNN rows are named by their sampling: another model under SymGNN's recipe keeps an unused param.
    assert [r["distribution"] for r in recs] == ["haar", ""]


def test_symgnn_rows_name_the_length_branch():
    from mgglass.report import symgnn_variant

    key = "model.net.init_args."
    assert symgnn_variant({key + "distribution": "learned"}) == "learned"  # a run from before the option
    assert symgnn_variant({key + "distribution": "learned", key + "edge_lengths": "False", key + "length_basis": "0"}) == "learned"
    assert symgnn_variant({key + "distribution": "haar", key + "edge_lengths": "True"}) == "haar + lengths"
    assert symgnn_variant({key + "distribution": "learned", key + "edge_lengths": "True", key + "length_basis": "50"}) == (
        "learned + lengths in 50 Gaussians")
    card = {key + "distribution": "learned", key + "edge_lengths": "True", key + "cardinality": "0.03"}
    assert symgnn_variant(card) == "learned + lengths + cardinality 0.03"
    assert symgnn_variant({**card, key + "cardinality": "0.0"}) == "learned + lengths"


def test_rows_average_over_seeds():
    from mgglass.report import render, table_rows

    recs = [
        {"model": "SymGNN", "group": "symgnn", "seed": str(s), "commit": "abc1234", "val_r": v, "epochs": 80,
         "test_r": t, "test_r2": 0.4, "test_mae": 0.2, "minutes": 20.0, "params": 1000}
        for s, v, t in ((0, 0.6, 0.78), (1, 0.62, 0.80), (2, 0.58, 0.76))
    ]
    recs.append({**recs[0], "model": "SpeciesMLP", "group": "mlp", "test_r": 0.05})
    rows = table_rows(recs)
    assert [r["model"] for r in rows] == ["SymGNN", "SpeciesMLP"]
    mean, std = rows[0]["test_r"]
    assert mean == pytest.approx(0.78) and std == pytest.approx(np.std([0.78, 0.80, 0.76], ddof=1))
    text = render(rows, [("per-atom potential energy (`pot`)", 0.013)], "sqlite:///x", 4, "abcdef0")
    assert "**0.780 ± 0.020**" in text and "0.7859 ± 0.0056 (SymGNN)" in text
    assert "| 3 (0,1,2) |" in text and "No finished fit yet" in text and "SchNet (0.7588)" in text
    assert "| per-atom potential energy (`pot`) | +0.013 |" in text
    # SymGNN's sampling names the row; without symmetrisation it sits beside the paper's ablation.
    recs = [{**recs[0], "distribution": d, "group": f"symgnn-{d}"} for d in ("haar", "none")]
    text = render(table_rows(recs), [], "sqlite:///x", 2, "abcdef0", {"r": 0.31, "what": "3000 atoms, p.csv"})
    assert "| SymGNN (haar) | symgnn-haar |" in text and "0.7859 ± 0.0056 (SymGNN)" in text
    assert "| SymGNN (none) | symgnn-none |" in text and "0.2669 ± 0.0371 (w/o symmetrization)" in text
    assert "**0.310** | 0.3614 (MD local sampling)" in text


def test_an_earlier_page_keeps_the_rows_and_seeds_this_store_lacks(tmp_path):
    from mgglass.report import merge_page, page_rows, render, table_rows

    def rec(model, group, test_r, seed="0", **kw):
        return {"model": model, "group": group, "seed": seed, "commit": "old0001", "val_r": 0.6, "epochs": 40,
                "test_r": test_r, "test_r2": 0.4, "test_mae": 0.2, "minutes": 20.0, "params": 1000, **kw}

    old = render(table_rows([rec("SymGNN", "symgnn", 0.80), rec("SchNetAtom", "schnet", 0.70),
                             rec("Augmented", "augment", 0.78, "0"), rec("Augmented", "augment", 0.79, "1"),
                             rec("SymGNN", "symgnn-none", 0.40, distribution="none", configs="symgnn.yaml x=1")]),
                 [], "sqlite:///old", 6, "0ld0000", {"r": 0.31, "what": "3000 atoms, p.csv"})
    page = tmp_path / "results.md"
    page.write_text(old)
    kept = page_rows(page)
    assert [r["group"] for r in kept["rows"]] == ["symgnn", "augment", "schnet", "symgnn-none"]
    none = kept["rows"][-1]
    assert none["paper_key"] == "SymGNNNoSym" and none["configs"] == "symgnn.yaml x=1" and none["params"] == 1000
    # Re-rendering the page's own rows gives the page's table back.
    def table(text):
        return [line for line in text.splitlines() if line.startswith("| ")]

    assert table(render(kept["rows"], [], "sqlite:///old", 6, "0ld0000", {"r": 0.31, "what": "3000 atoms, p.csv"})) == table(old)
    # This store re-ran symgnn's seed 0 (replaces), adds augment's seed 2 (pooled) and EGNN (new).
    rows = table_rows([rec("SymGNN", "symgnn", 0.82, commit="new0001"), rec("Augmented", "augment", 0.75, "2", commit="new0001"),
                       rec("EGNN", "egnn", 0.25)])
    merged, used = merge_page(rows, kept)
    assert used == 3 and [r["group"] for r in merged] == ["symgnn", "augment", "schnet", "symgnn-none", "egnn"]
    assert merged[0]["test_r"][0] == pytest.approx(0.82) and merged[0]["n"] == 1
    aug = merged[1]
    assert aug["n"] == 3 and aug["seeds"] == "0,1,2" and aug["commits"] == "new0001,old0001"
    assert aug["test_r"][0] == pytest.approx(np.mean([0.78, 0.79, 0.75]), abs=1e-3)
    assert aug["test_r"][1] == pytest.approx(np.std([0.78, 0.79, 0.75], ddof=1), abs=1e-3)
    text = render(merged, [], "sqlite:///new", 3, "new0000", None, kept, used)
    # The merged page made again from the same store keeps the pooled row (its seeds include the store's).
    page.write_text(text)
    again, _ = merge_page(rows, page_rows(page))
    assert [(r["group"], r["n"], r["test_r"][0]) for r in again] == [(r["group"], r["n"], pytest.approx(r["test_r"][0], abs=1e-3)) for r in merged]
    assert "3 finished fits" in text and "3 rows come from" in text and "`0ld0000`" in text
    assert "SchNet (0.7588)" not in text and "w/o symmetrization (0.2669)" not in text  # kept rows count as present
    assert "MGCN (0.7352)" in text and "**0.310** | 0.3614" in text  # the page's MD row stays
    # This store holds augment's seeds 1 (re-run, the same fit) and 3, the page 0, 1 and 2: seed 1 is taken
    # out of the page's row and the page's own seeds 0 and 2 are pooled with the store's (it had dropped them).
    store = [rec("Augmented", "augment", 0.79, "1"), rec("Augmented", "augment", 0.70, "3", commit="new0002")]
    partial, _ = merge_page(table_rows(store), page_rows(page), store)
    aug = next(r for r in partial if r["group"] == "augment")
    assert aug["n"] == 4 and aug["seeds"] == "0,1,2,3"
    assert aug["test_r"][0] == pytest.approx(np.mean([0.78, 0.79, 0.75, 0.70]), abs=1e-3)
    assert aug["test_r"][1] == pytest.approx(np.std([0.78, 0.79, 0.75, 0.70], ddof=1), abs=2e-3)
    (tmp_path / "other.md").write_text("# something else\n")
    with pytest.raises(ValueError, match="other.md"):
        page_rows(tmp_path / "other.md")


def test_propensity_csv_gives_the_md_row(tmp_path):
    from mgglass.report import propensity_baseline

    path = tmp_path / "p.csv"
    path.write_text("atom,species,propensity_a2,eb_ev\n0,Cu,0.1,2.0\n1,Zr,0.3,1.0\n2,Cu,0.2,1.4\n")
    md = propensity_baseline(path)
    assert md["r"] == pytest.approx(np.corrcoef([-0.1, -0.3, -0.2], [2.0, 1.0, 1.4])[0, 1])
    (tmp_path / "bad.csv").write_text("atom,species,propensity_a2\n0,Cu,0.1\n")
    with pytest.raises(ValueError, match="bad.csv"):
        propensity_baseline(tmp_path / "bad.csv")
    # One atom gave r = nan in the MD row; a binary file, a decoding error that named no file.
    (tmp_path / "one.csv").write_text("atom,species,propensity_a2,eb_ev\n0,Cu,0.1,2.0\n")
    (tmp_path / "glass.pickle").write_bytes(bytes(range(256)))
    for name in ("one.csv", "glass.pickle"):
        with pytest.raises(ValueError, match=f"{name}: not a propensity CSV"):
            propensity_baseline(tmp_path / name)
    from mgglass.report import page_rows

    with pytest.raises(ValueError, match="glass.pickle: not a results page"):
        page_rows(tmp_path / "glass.pickle")


def test_report_reads_the_smoke_fit(tmp_path_factory, tmp_path):
    r = smoke_fit(tmp_path_factory, "smoke")
    assert r["rc"] == 0
    out = tmp_path / "results.md"
    p = run_cli("mgglass.report", ["--tracking_root", r["root"], "--experiment", "smoke", "--out", str(out), "--data_dir", str(tmp_path)], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout.strip().splitlines()[-1])["runs"] == 1
    _, run = only_run(r["root"])
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| SymGNN (learned) | smoke (smoke.yaml) |"))
    assert f"**{run.data.metrics[ui_name('test_r')]:.3f}**" in row and "0.7859" in row
    assert "Physical baselines" not in text  # no released data in --data_dir


def test_report_without_store_is_one_line_error(tmp_path):
    p = run_cli("mgglass.report", ["--tracking_root", str(tmp_path / "none")], tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "no MLflow store" in p.stderr


@pytest.mark.parametrize("out, expected", [("glass.pickle", "expected a Markdown page (.md)"), ("file/r.md", "cannot make this folder")])
def test_report_refuses_an_out_it_cannot_or_should_not_write(tmp_path, capsys, out, expected):
    from mgglass.report import main

    (tmp_path / "glass.pickle").write_bytes(b"a user's glass")
    (tmp_path / "file").write_text("")
    assert main(["--tracking_root", str(tmp_path / "none"), "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert (tmp_path / "glass.pickle").read_bytes() == b"a user's glass"


def test_physical_baselines_on_the_released_test_glass(cuzr_dir):
    from mgglass.report import physical_baselines

    r = dict(physical_baselines(Path(cuzr_dir)))
    assert r["per-atom potential energy (`pot`)"] == pytest.approx(0.013, abs=0.002)
    assert r["per-atom von Mises stress (`von`)"] == pytest.approx(-0.117, abs=0.002)
    assert all(abs(v) < 0.2 for v in r.values())  # local energetics and composition do not predict EBs


def test_reference_refuses_a_bad_glass_before_creating_a_run(tmp_path, capsys):
    import pickle

    from mgglass.data import write_synthetic
    from mgglass.reference import main

    write_synthetic(tmp_path / "g", ["a.xyz", "b.xyz", "c.xyz"], n_atoms=64)
    (tmp_path / "g" / "torn.pickle").write_bytes(pickle.dumps({"positions": [[0.0, 0.0, 0.0]]})[:20])
    args = ["--data_dir", str(tmp_path / "g"), "--train", "a.xyz,torn.pickle", "--val", "b.xyz", "--test", "c.xyz",
            "--tracking_root", str(tmp_path / "mlruns")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torn.pickle: corrupt pickle" in err[0], err
    assert not (tmp_path / "mlruns").exists()  # no store, no FAILED run

def test_descriptor_reference_runs_are_rows_of_the_table(tmp_path, monkeypatch, capsys):
    """python -m mgglass.reference logs each seed as a run the report lists (model SOAP+LightGBM);
    rerun, a finished seed is not fitted again."""
    pytest.importorskip("dscribe")
    pytest.importorskip("lightgbm")
    from mgglass.data import write_synthetic
    from mgglass.report import collect, table_rows
    from mgglass.tracking import open_client

    monkeypatch.setenv("MGGLASS_CACHE_DIR", str(tmp_path / "cache"))
    write_synthetic(tmp_path / "g", ["a.xyz", "b.xyz", "c.xyz", "d.xyz"], n_atoms=120)
    args = ["--data_dir", str(tmp_path / "g"), "--train", "a.xyz,b.xyz", "--val", "c.xyz", "--test", "d.xyz",
            "--tracking_root", str(tmp_path / "mlruns"), "--experiment", "smoke", "--seeds", "0,1"]
    p = run_cli("mgglass.reference", args, tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    runs = json.loads(p.stdout.strip().splitlines()[-1])["runs"]
    q = run_cli("mgglass.reference", args, tmp_path)
    assert q.returncode == 0 and q.stderr.count("not run again") == 2, q.stderr[-2000:]
    assert json.loads(q.stdout.strip().splitlines()[-1])["runs"] == runs  # the finished runs' own numbers, same keys
    # Another test glass under the same name would have been answered by these runs' numbers: refused
    # (in this process: it stops before any fit).
    from mgglass.reference import main as reference

    assert reference([*args[:6], "--test", "c.xyz,d.xyz", *args[8:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "soap-lgbm-s0 was on other glasses (test d.xyz)" in err[0], err
    client = open_client(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (row,) = table_rows(collect(client, [client.get_experiment_by_name("smoke").experiment_id]))
    assert row["model"] == "SOAP+LightGBM" and row["group"] == "soap-lgbm" and row["n"] == 2
    assert {r.data.tags["machine"] for r in client.search_runs([client.get_experiment_by_name("smoke").experiment_id])} == {machine()}
    assert row["test_r"][0] == pytest.approx(np.mean([r["test_r"] for r in runs]), abs=1e-9)
