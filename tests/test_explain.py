"""python -m mgglass.explain: models honour edge masks, explanations stay on the k-hop neighbourhood,
optimal H1 cycles follow HomCloud's definition, a trained model's top edges find the shell its label
depends on, and the command writes its artifacts and a child MLflow run, refusing bad inputs in one line."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_fit import artifact_paths, client_for, run_cli, smoke_fit
from torch_geometric.data import Batch


def _graph(n=300, seed=0):
    from mgglass.data import glass_to_data, make_glass

    return glass_to_data(make_glass(n, seed=seed))


def _nets():
    from mgglass.models.schnet import SchNetAtom
    from mgglass.models.symgnn import EGATLength, SymGNN

    torch.manual_seed(0)
    return {
        "SymGNN": SymGNN(hidden=8, heads=(2, 1), dropout=0.0, k_train=1, k_eval=2, decoder_layers=2),
        "EGATLength": EGATLength(hidden=8, heads=(2, 1), dropout=0.0, decoder_layers=2),
        "SymGNN inner": SymGNN(hidden=8, heads=(2, 1), dropout=0.0, k_train=1, k_eval=2, decoder_layers=2, inner_cutoff=3.0),
        "SchNetAtom": SchNetAtom(hidden_channels=8, num_filters=8, num_interactions=2, num_gaussians=10),
    }


@pytest.mark.parametrize("name", ["SymGNN", "EGATLength", "SchNetAtom", "SymGNN inner"])
def test_models_honour_explainer_edge_masks(name):
    from torch_geometric.explain.algorithm.utils import clear_masks, set_masks

    from mgglass.explain.explainer import ExplainableNet

    data = _graph(120)
    net = _nets()[name]
    model = ExplainableNet(net).eval()
    batch = Batch.from_data_list([data])
    with torch.no_grad():
        plain = model(None, data.edge_index, batch)
        torch.testing.assert_close(plain, net(batch), rtol=0, atol=1e-6)  # the net explained is the net that predicts
        e = data.num_edges
        set_masks(model, torch.ones(e), data.edge_index, apply_sigmoid=False)
        ones = model(None, data.edge_index, batch)
        clear_masks(model)
        model._cached = None
        set_masks(model, torch.zeros(e), data.edge_index, apply_sigmoid=False)
        zeros = model(None, data.edge_index, batch)
        clear_masks(model)
    torch.testing.assert_close(ones, plain, rtol=0, atol=1e-5)
    assert (zeros - plain).abs().max() > 1e-3


def test_neighbourhood_holds_every_edge_that_reaches_the_atom():
    from mgglass.explain.explainer import ExplainableNet, neighbourhood

    data = _graph(400, seed=1)
    net = _nets()["SymGNN"].eval()
    with torch.no_grad():
        whole = net(Batch.from_data_list([data]))
        for atom in (0, 57):
            sub, c = neighbourhood(data, atom, 2)
            assert int(sub.node_id[c]) == atom and sub.num_edges < data.num_edges
            # Edges carry their glass ids: vectors and endpoints are the glass's own.
            torch.testing.assert_close(sub.edge_vec, data.edge_vec[sub.edge_id])
            assert torch.equal(sub.node_id[sub.edge_index], data.edge_index[:, sub.edge_id])
            local = ExplainableNet(net).eval()(None, sub.edge_index, Batch.from_data_list([sub]))
            assert abs(float(local[c] - whole[atom])) < 1e-5
            short, c1 = neighbourhood(data, atom, 1)  # one hop too few changes the prediction
            assert abs(float(net(Batch.from_data_list([short]))[c1] - whole[atom])) > 1e-4


def test_optimal_cycle_of_a_ring_is_the_ring():
    from mgglass.explain.topology import alpha_h1_cycles, cycle_counts

    angles = np.arange(7) * 2 * np.pi / 7
    ring = np.stack([3 * np.cos(angles), 3 * np.sin(angles), 0.05 * np.sin(3 * angles)], 1)
    points = np.concatenate([ring, [[0, 0, 2.5], [0, 0, -2.5]]])  # two apexes: a 3-D complex
    cycles = alpha_h1_cycles(points)
    longest = max(cycles, key=lambda c: c["death"] - c["birth"])
    assert sorted(longest["edges"]) == sorted((i, (i + 1) % 7) if i < 6 else (0, 6) for i in range(7))
    counts = cycle_counts([longest])
    assert counts[(0, 1)] == 1 and counts[(0, 2)] == 0


def test_optimal_cycles_are_closed_shortest_loops_through_their_birth_edge():
    from mgglass.explain.topology import alpha_h1_cycles

    rng = np.random.default_rng(0)
    cycles = alpha_h1_cycles(rng.uniform(0, 12, size=(150, 3)))
    assert len(cycles) > 10
    for c in cycles:
        degree = np.bincount(np.ravel(c["edges"]))
        assert set(degree[degree > 0]) == {2}  # a simple closed loop
        assert len(c["edges"]) >= 3 and c["death"] > c["birth"]


def test_edge_groups_are_ranked_disjoint_where_they_should_be():
    from mgglass.explain.analysis import edge_groups

    imp = np.linspace(1, 0, 100)
    eligible = np.ones(100, bool)
    eligible[:5] = False
    g = edge_groups(imp, eligible, 10, np.random.default_rng(0))
    assert g["top"].tolist() == list(range(5, 15))
    assert g["bottom"].tolist() == list(range(90, 100))
    assert set(g["middle"]).isdisjoint(g["top"]) and set(g["middle"]).isdisjoint(g["bottom"])
    assert len(g["random"]) == 10 and eligible[g["random"]].all()


def test_peaks_are_found_where_the_histogram_peaks():
    from mgglass.explain.analysis import distance_profile

    rng = np.random.default_rng(0)
    d = np.concatenate([rng.normal(2.6, 0.15, 2000), rng.normal(5.2, 0.25, 1500), rng.normal(7.0, 0.3, 1000)])
    prof = distance_profile(d, rng.uniform(0, 12, 5000), 0.1, 12.0)
    assert len(prof["peaks_top"]) == 3
    np.testing.assert_allclose(prof["peaks_top"], [2.6, 5.2, 7.0], atol=0.15)
    assert prof["top_within_10A"] == pytest.approx(1.0, abs=1e-3)


def test_trained_model_explanations_find_the_atoms_own_bonds():
    """Synthetic labels depend only on each atom's own neighbours (its edges, weighted to the first
    shell): a trained model's top-ranked edges must be the explained atom's own edges, where the
    same network untrained (the control, on the same neighbourhoods and explainer seeds) ranks them
    no better than chance.

    Measured over training seeds 0-9 x torch threads 1, 2 x ATen kernels avx512 (native), default
    (40 runs; the old constant-LR recipe failed to learn in 3 of 30, r 0.21 to 0.57): held-out r
    0.89-0.96; mean top-10 share of own edges over 16 atoms 0.58-0.99 trained, 0.031-0.038 untrained
    (own edges are ~3 % of a 2-hop neighbourhood's). A given run's share moves by up to 0.25 with the
    thread count, hence bounds well outside the spread rather than the 0.8 of before."""
    import copy

    from mgglass.data import glass_to_data, make_glass
    from mgglass.explain.explainer import (
        ExplainableNet,
        ExplainerSettings,
        explain_atom,
        neighbourhood,
    )
    from mgglass.models.symgnn import EGATLength

    graphs = [glass_to_data(make_glass(160, seed=s, noise=0.0)) for s in range(4)]
    ys = torch.cat([g.y for g in graphs])
    mean, std = ys.mean(), ys.std()
    torch.manual_seed(0)
    net = EGATLength(hidden=16, heads=(2, 1), dropout=0.0, decoder_layers=2)
    untrained = copy.deepcopy(net).eval()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=300, pct_start=0.1)
    batch = Batch.from_data_list(graphs[:3])
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(batch), (batch.y - mean) / std)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    test = graphs[3]
    with torch.no_grad():
        r = np.corrcoef(net(Batch.from_data_list([test])).numpy(), test.y.numpy())[0, 1]
    assert r > 0.8, f"the model did not learn the synthetic label (test r {r:.2f})"

    def own_share(model) -> float:
        shares = []
        for atom in range(0, 160, 10):
            sub, c = neighbourhood(test, atom, 2)
            imp, _ = explain_atom(ExplainableNet(model).eval(), sub, c, ExplainerSettings(epochs=150), seed=atom)
            shares.append((sub.edge_index[1] == c).numpy()[np.argsort(-imp)[:10]].mean())
        return float(np.mean(shares))

    trained, control = own_share(net), own_share(untrained)
    assert trained > 0.4 and control < 0.15 and trained > control + 0.35, (trained, control)


# -- the command on a smoke fit --------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    r = smoke_fit(tmp_path_factory, "smoke_explain")
    assert r["rc"] == 0, r["stderr"][-2000:]
    root = Path(r["root"])
    glass = root / "big.extxyz"
    if not glass.exists():
        from ase.io import write

        from mgglass.data import make_glass

        write(glass, make_glass(900, seed=5).to_atoms("eb"), format="extxyz")
    return {"root": root, "ckpt": next((root / "checkpoints" / "smoke").glob("best-epoch=*.ckpt")), "glass": glass}


def test_explain_writes_artifacts_and_a_child_run(fitted, tmp_path):
    out = tmp_path / "ex"
    args = ["--ckpt_path", str(fitted["ckpt"]), "--glass", str(fitted["glass"]), "--select", "centre", "--n", "3",
            "--explainer.epochs", "30", "--analysis.group_size", "8", "--out", str(out),
            "--tracking_root", str(fitted["root"])]
    (out / "neighbourhoods").mkdir(parents=True)
    (out / "neighbourhoods" / "atom_899.extxyz").write_text("an earlier run's atom\n")  # --out reused
    p = run_cli("mgglass.explain", args, fitted["root"])
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads(p.stdout.strip().splitlines()[-1])
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(f.name for f in (out / "neighbourhoods").iterdir()) == sorted(f"atom_{a}.extxyz" for a in summary["atoms"])
    # the default 10-Å homology ball does not fit this 24.7-Å box: fitted to it and said so
    assert "ph_radius 10.0 Å does not fit this glass" in p.stderr and summary["analysis"]["ph_radius"] < 8.3
    assert len(summary["atoms"]) == 3 and summary["seconds_per_atom"] > 0
    assert set(summary["cycles"]) >= {"top", "middle", "bottom", "random", "top_vs_random"}
    assert all(summary["cycles"][g]["n"] == 24 for g in ("top", "middle", "bottom", "random"))
    assert 0 <= summary["cycles"]["top_vs_random"]["p"] <= 1
    assert isinstance(summary["distance_profile"]["peaks_top"], list)
    with gzip.open(out / "edges.csv.gz", "rt") as f:
        rows = list(csv.DictReader(f))
    atoms = {int(r["atom"]) for r in rows}
    assert atoms == set(summary["atoms"])
    first = [r for r in rows if int(r["atom"]) == summary["atoms"][0]]
    imps = [float(r["importance"]) for r in first]
    assert imps == sorted(imps, reverse=True) and 0 <= min(imps) <= max(imps) <= 1
    assert sum(r["group"] == "top" for r in first) == 8
    from ase.io import read

    nb = read(out / "neighbourhoods" / f"atom_{summary['atoms'][0]}.extxyz")
    assert nb.arrays["explained"].sum() == 1 and nb.arrays["importance"].max() <= 1
    for png in ("distance_profile.png", "cycles.png", "neighbourhood_3d.png"):
        assert (out / png).stat().st_size > 1000
    # The child run sits under the explained fit in MLflow.
    c = client_for(fitted["root"])
    parent = json.loads((fitted["ckpt"].parent / "mlflow_run.json").read_text())["run_id"]
    child = c.get_run(result["mlflow_run"])
    assert child.data.tags["explains"] == parent and child.data.tags["mlflow.parentRunId"] == parent
    assert "cycles_top_mean" in child.data.metrics
    assert "explain/summary.json" in artifact_paths(c, child.info.run_id)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--atoms", "0,99999"], "--atoms: [99999]"),
        (["--atoms", "a,b"], "expected comma-separated atom indices"),
        (["--select", "middle"], "--select must be one of"),
        (["--glass", "nope.extxyz"], "--glass nope.extxyz: no such file"),
        (["--explainer.epochs", "0"], "--explainer.epochs must be positive"),
        (["--analysis.bin_width", "-1"], "--analysis.bin_width must be positive"),  # failed after the explanation
        (["--no_such_option", "1"], "error"),
    ],
)
def test_explain_bad_inputs_are_one_line_errors(fitted, args, expected, capsys):
    from mgglass.explain.__main__ import main

    rc = main(["--ckpt_path", str(fitted["ckpt"]), "--glass", str(fitted["glass"]), "--mlflow", "false", *args])
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and expected in lines[0], err[-1500:]


def test_explain_config_holds_the_papers_settings():
    from mgglass.explain.__main__ import parser

    root = Path(__file__).resolve().parents[1]
    args = parser().parse_args(["--config", str(root / "experiments" / "explain.yaml"), "--ckpt_path", "x.ckpt"])
    assert (args.select, args.n, args.explainer.epochs, args.explainer.lr) == ("centre", 50, 500, 0.01)


def test_explain_needs_exactly_one_model_source(fitted, capsys):
    from mgglass.explain.__main__ import main

    assert main(["--glass", str(fitted["glass"])]) == 2
    assert "exactly one of --run and --ckpt_path" in capsys.readouterr().err
