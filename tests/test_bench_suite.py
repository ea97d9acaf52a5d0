"""make bench: the page it writes carries the numbers the benchmarks printed, names the machine, and
the scaling fit reads a log-log slope (1 = linear)."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def test_slope_is_the_log_log_exponent():
    from mgglass.bench.scaling import slope

    n = np.array([3e3, 8e3, 64e3, 512e3])
    assert slope(n, 2e-4 * n) == pytest.approx(1.0)
    assert slope(n, 1e-9 * n**2) == pytest.approx(2.0)


def test_scaling_rejects_sizes_that_are_not_cubes(capsys):
    from mgglass.bench.scaling import main

    assert main(["--ckpt_path", "x.ckpt", "--sizes", "1,10"]) == 2
    assert "must be cubes" in capsys.readouterr().err
    assert main(["--ckpt_path", "x.ckpt", "--sizes", "1,eight"]) == 2  # a one-line error, not a traceback
    assert "must be cubes" in capsys.readouterr().err


def test_page_holds_the_measured_numbers():
    from mgglass.bench.suite import models_table, render

    models = ("data x, torch threads 2\nmodel        device  atoms    edges    params  fwd+bwd s   peak MB     Δ MB\n"
              "symgnn       cpu      8000   259838   102,796      1.850      2100      900\n"
              "faenet       cpu     failed: out of memory\n")
    table = models_table(models)
    assert table[2] == "| symgnn | cpu | 8000 | 259838 | 102,796 | 1.85 | 11.1 | 2100 |"
    assert table[3].startswith("| faenet | cpu | failed: out of memory")
    rows = [{"glass": "test0", "atoms": 3000, "edges": 97530, "graph_s": 0.1, "predict_s": 0.5, "total_s": 0.6, "peak_mb": 1024, "chunk_atoms": None},
            {"glass": "train0x8", "atoms": 64000, "edges": 2078704, "graph_s": 1.0, "predict_s": 11.0, "total_s": 12.0, "peak_mb": 4096, "chunk_atoms": 50000,
             "cli_s": 15.25, "cli_peak_mb": 3072}]
    page = render({"latency": {"atoms": 3000, "edges": 97530, "end_to_end_s": 0.234, "model_only_s": 0.2},
                   "scaling": rows, "scaling_fit": {"slope_total_s": 0.98, "slope_predict_s": 0.99, "slope_peak_mb": 0.45},
                   "models": models, "graph": "radius graphs ...",
                   "levers": [{"bench": "train step", "config": "before", "atoms": 8000, "edges": 259838, "threads": 2, "reps": 7,
                               "median_s": 1.2, "min_s": 1.1, "vs_before": 1.0},
                              {"bench": "train step", "config": "fused edge encoders", "atoms": 8000, "edges": 259838, "threads": 2,
                               "reps": 7, "median_s": 0.9, "min_s": 0.85, "vs_before": 0.75}]},
                  {"date": "2026-12-02", "commit": "abc1234", "machine": "Some CPU, 2 cores", "torch": "2.13.0", "threads": 2,
                   "ckpt": "c.ckpt", "chunk_atoms": 50000})
    assert "| 3000 | 97530 | 0.234 | 0.200 |" in page
    assert "| 64,000 | 2,078,704 | 1.00 | 11.00 | 12.00 | 188 | 4.00 | 15.2 | 3.00 |" in page
    assert "| 3,000 | 97,530 | 0.10 | 0.50 | 0.60 | 200 | 1.00 | not run |  |" in page  # a size without the CLI run
    assert "total time 0.98" in page and "Some CPU, 2 cores" in page and "`abc1234`" in page
    assert "| symgnn | cpu | 8000 |" in page
    assert "| train step | fused edge encoders | 0.900 | 0.850 | 0.75 |" in page


def test_profile_names_every_stage_and_its_ops_add_up():
    # The stages are profiler scopes inside the model: removing one, or a path that skips them,
    # empties its row of the page. Prediction by ranges adds the per-range stage.
    from mgglass.bench.profile import KIND_NAMES, _profiled, breakdown, table
    from mgglass.data import glass_to_data, make_glass
    from mgglass.inference import predict_glass
    from mgglass.models.egat import STAGES
    from mgglass.models.symgnn import SymGNN
    from mgglass.task import EBTask

    torch.manual_seed(0)
    task = EBTask(SymGNN(hidden=8, heads=(2, 1), dropout=0.0, k_train=1, k_eval=2, decoder_layers=2, edge_lengths=True)).eval()
    data = glass_to_data(make_glass(2500, seed=1))  # above 2048 atoms: predicted in spatial order
    rows = []
    for chunk in (None, 500):
        prof, wall = _profiled(lambda chunk=chunk: predict_glass(task, data, chunk_atoms=chunk))
        stages, kinds, flops = breakdown(prof, wall)
        expected = set(STAGES.values()) - ({STAGES["range"]} if chunk is None else set())
        assert set(stages) == expected
        assert all(v > 0 for v in stages.values()) and list(kinds) == KIND_NAMES
        assert sum(kinds.values()) == pytest.approx(wall, rel=0.05)  # Python and dispatch fills the rest
        assert kinds["GEMMs"] > 0 and kinds["gathers and scatters"] > 0 and kinds["sparse products"] > 0 and flops > 0
        rows.append({"run": "predict", "atoms": 2500, "time_s": wall, "profiled_s": wall, "stages": stages, "ops": kinds,
                     "gemm_gflop": flops / 1e9, "peak_mb": 2048})
    page = "\n".join(table(rows))
    assert "| *stage:* edge encoding |" in page and "| *ops:* GEMMs |" in page and "| peak RSS before profiling (GiB) | 2.00 | 2.00 |" in page
    assert page.count("per-range src parts") == 1
    rate = rows[0]["gemm_gflop"] / rows[0]["ops"]["GEMMs"]
    assert f"| dense GEMMs: GFLOP, at GFLOP/s | {rows[0]['gemm_gflop']:.1f}, at {rate:.0f} |" in page


def test_profile_counts_dense_gemm_flops_and_tells_csr_products_apart():
    # torch runs a CSR product as aten::addmm: counted as dense, an 800 x 800 adjacency would add
    # 2·800·800·16 FLOPs no core spent, and its time would sit among the GEMMs.
    import warnings

    from mgglass.bench.profile import _profiled, breakdown, gemm_flops

    a, b, bias = torch.rand(64, 32), torch.rand(32, 16), torch.rand(16)
    warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
    idx = torch.randint(0, 800, (2, 4000))
    csr = torch.sparse_coo_tensor(idx, torch.rand(4000), (800, 800)).coalesce().to_sparse_csr()
    x = torch.rand(800, 16)
    prof, wall = _profiled(lambda: (a @ b, torch.addmm(bias, a, b), csr @ x, torch.bmm(a[None], b[None])))
    _, kinds, flops = breakdown(prof, wall)
    assert flops == 3 * 2 * 64 * 32 * 16  # the three dense products, not the CSR one
    assert kinds["sparse products"] > 0 and kinds["GEMMs"] > 0
    assert gemm_flops("aten::addmv", [[5], [5, 7], [7], [], []]) == 70 and gemm_flops("aten::mm", [[2, 3], [4, 5]]) == 0
    assert gemm_flops("aten::mm", [[], []]) == 0  # shapes not recorded: nothing counted


def test_bench_options_are_checked_in_one_line(capsys, tmp_path):
    from mgglass.bench import levers, models, profile

    assert models.main(["--init_args", "[1]"]) == 2
    assert "--init_args must be a JSON object" in capsys.readouterr().err
    assert models.main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    assert models._config_net("experiments/symgnn.yaml")["init_args"]["cardinality"] == 0.03
    assert levers.main(["--ckpt_path", str(tmp_path / "x.ckpt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert profile.main(["--ckpt_path", str(tmp_path / "x.ckpt")]) == 2
    assert "x.ckpt: no such checkpoint" in capsys.readouterr().err
    (tmp_path / "x.ckpt").write_bytes(b"")
    assert profile.main(["--ckpt_path", str(tmp_path / "x.ckpt"), "--sizes", "1,9"]) == 2
    assert "must be cubes" in capsys.readouterr().err


def test_bench_all_refuses_a_missing_checkpoint_before_running_anything(tmp_path, capsys):
    from mgglass.bench.suite import main

    page = tmp_path / "performance.md"
    page.write_text("the measured page\n")
    assert main(["--ckpt_path", str(tmp_path / "typo.ckpt"), "--out", str(page)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "typo.ckpt: no such file" in err[0]
    assert page.read_text() == "the measured page\n"


def test_bench_all_keeps_the_page_when_a_benchmark_fails(tmp_path, monkeypatch, capsys):
    from mgglass.bench import suite

    monkeypatch.setattr(suite, "bench", lambda name, args, threads, timeout: (f"{name}: out of memory", 0.0, 1))
    (tmp_path / "x.ckpt").write_text("")
    page = tmp_path / "performance.md"
    page.write_text("the measured page\n")
    assert suite.main(["--ckpt_path", str(tmp_path / "x.ckpt"), "--out", str(page)]) == 1
    assert page.read_text() == "the measured page\n"
    assert "latency: out of memory" in (tmp_path / "performance.failed.md").read_text()
    assert f"{page} kept" in capsys.readouterr().out


def test_bench_commands_turn_a_bad_checkpoint_or_glass_into_one_line(tmp_path, capsys):
    from mgglass.bench.__main__ import main

    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    assert main(["latency", "--ckpt_path", str(tmp_path / "notes.ckpt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mgglass.bench latency: error:") and "not a loadable mgglass checkpoint" in err[0]
    assert main(["graph", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file" in err[0]


@pytest.mark.parametrize("argv", [["fit", "--model", "bogus"], ["models", "--models", "bogus,symgnn"]])
def test_bench_refuses_an_unknown_model_before_timing_anything(argv, capsys):
    from mgglass.bench.__main__ import main

    assert main(argv) == 2  # fit: a traceback after reading the glasses; models: a row of the table, exit 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model 'bogus'" in err[0]
