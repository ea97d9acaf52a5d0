"""Batch-norm recalibration: eval-mode statistics recomputed over training glasses, nothing else touched."""

import copy

import pytest
import torch
from torch_geometric.data import Batch

from mgglass.callbacks.calibration import batch_norms, recalibrate
from mgglass.models.symgnn import SymGNN
from mgglass.tracking import ui_name


def _graphs(synthetic_batch):
    return synthetic_batch.to_data_list()


def _net(distribution="learned", dropout=0.25):
    torch.manual_seed(0)
    return SymGNN(hidden=8, heads=(2, 1), dropout=dropout, distribution=distribution, k_train=2, k_eval=4,
                  decoder_layers=2)


@pytest.mark.parametrize("distribution", ["learned", "haar", "fixed"])
def test_statistics_are_those_of_eval_mode_features(synthetic_batch, distribution):
    """Each batch norm's recomputed statistics are the mean and (unbiased) variance of its inputs in an
    eval-mode forward (dropout off, the evaluation samples of the symmetriser) that normalises with
    batch statistics, whatever the stale running statistics were."""
    g = _graphs(synthetic_batch)[0]
    g.edge_vec = g.edge_vec.double()
    net = _net(distribution).double()
    with torch.no_grad():  # stale statistics, as after fast training
        for m in batch_norms(net):
            m.running_mean.normal_(0, 3)
            m.running_var.uniform_(5, 50)
    ref = copy.deepcopy(net).eval()
    inputs = {}
    for name, m in ref.named_modules():
        if m in batch_norms(ref):
            m.track_running_stats = False
            m.running_mean = m.running_var = None
            m.register_forward_pre_hook(lambda mod, inp, name=name: inputs.update({name: (inp[0].mean(0), inp[0].var(0))}))
    with torch.no_grad():
        ref(Batch.from_data_list([g]))
    net.train()
    assert recalibrate(net, [g]) == 1
    assert net.training and all(m.training for m in net.modules())  # modes restored
    assert all(m.momentum == 0.1 for m in batch_norms(net))
    norms = dict(net.named_modules())
    assert len(inputs) >= 6  # every batch norm called as a module (the fused EGAT edge norm is not)
    for name, (mean, var) in inputs.items():
        torch.testing.assert_close(norms[name].running_mean, mean, rtol=1e-9, atol=1e-9, msg=name)
        torch.testing.assert_close(norms[name].running_var, var, rtol=1e-9, atol=1e-9, msg=name)
    # The fused edge norm of the first EGAT layer moved from its stale value to the data's scale.
    edge_norm = net.gnn.layers[0].edge_norm
    assert edge_norm.running_var.max() < 5 and edge_norm.running_mean.abs().max() < 3


def test_averages_over_glasses_and_ignores_previous_statistics(synthetic_batch):
    graphs = _graphs(synthetic_batch)
    a, b = _net(), _net()
    with torch.no_grad():
        for m in batch_norms(b):
            m.running_mean.fill_(7.0)
            m.running_var.fill_(9.0)
    recalibrate(a, graphs)
    recalibrate(b, graphs)
    for ma, mb in zip(batch_norms(a), batch_norms(b), strict=True):
        torch.testing.assert_close(ma.running_mean, mb.running_mean)
        torch.testing.assert_close(ma.running_var, mb.running_var)
    # The statistics of two glasses are the mean of each glass's own.
    one, two = _net(), _net()
    recalibrate(one, graphs[:1])
    recalibrate(two, graphs[1:])
    for m, m1, m2 in zip(batch_norms(a), batch_norms(one), batch_norms(two), strict=True):
        torch.testing.assert_close(m.running_mean, (m1.running_mean + m2.running_mean) / 2)
        torch.testing.assert_close(m.running_var, (m1.running_var + m2.running_var) / 2)
    # Weights and training mode are untouched.
    net = _net().train()
    before = {k: v.clone() for k, v in net.named_parameters()}
    recalibrate(net, graphs)
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.named_parameters())


def test_no_glasses_leaves_statistics_alone(synthetic_batch):
    net = _net()
    before = [m.running_var.clone() for m in batch_norms(net)]
    assert recalibrate(net, []) == 0
    assert all(torch.equal(b, m.running_var) for b, m in zip(before, batch_norms(net)))


def test_fit_logs_the_running_average_metrics_it_replaces(tmp_path):
    """With ``recalibrate_bn.compare``, each epoch logs what validation would have given with the
    training-time running averages, beside the recalibrated numbers."""
    from test_fit import SMOKE, client_for, only_run, run_cli

    p = run_cli("mgglass.fit", ["--config", SMOKE, f"--tracking.root={tmp_path}", "--trainer.max_epochs=3",
                                "--recalibrate_bn.compare=true"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    c, run = only_run(tmp_path)
    for key in ("val_r_ema", "val_mae_ema"):
        hist = c.get_metric_history(run.info.run_id, ui_name(key))
        assert sorted(h.step for h in hist) == [0, 1, 2], key
    ema = {h.step: h.value for h in c.get_metric_history(run.info.run_id, ui_name("val_mae_ema"))}
    now = {h.step: h.value for h in client_for(tmp_path).get_metric_history(run.info.run_id, ui_name("val_mae"))}
    assert all(ema[e] > 0 and ema[e] != now[e] for e in range(3))


def test_symmetriser_statistics_come_from_an_edge_subset(synthetic_batch, monkeypatch):
    """Above ``calibration_edges`` edges, φ's statistics come from that many random edges and every edge
    is then encoded by the eval path; the result is close to recalibrating on all edges."""
    from mgglass.models.symgnn import Symmetrizer

    g = _graphs(synthetic_batch)[0]
    full, sub = _net(), _net()
    sub.edge_encoder.calibration_edges = g.edge_vec.shape[0] // 3
    rows = []
    encode = Symmetrizer._encode
    monkeypatch.setattr(Symmetrizer, "_encode", lambda self, x, q, w: rows.append(x.shape[0]) or encode(self, x, q, w))
    recalibrate(full, [g])
    assert rows == [g.edge_vec.shape[0]]
    rows.clear()
    recalibrate(sub, [g])
    assert rows == [sub.edge_encoder.calibration_edges]  # φ saw the subset only; all edges went the eval way
    assert all(m.training for m in sub.edge_encoder.phi)  # modes restored (the net was in training mode)
    for a, b in zip(batch_norms(full.edge_encoder), batch_norms(sub.edge_encoder), strict=True):
        torch.testing.assert_close(b.running_mean, a.running_mean, atol=0.15 * float(a.running_var.sqrt().max()), rtol=0)
        torch.testing.assert_close(b.running_var, a.running_var, rtol=0.3, atol=1e-6)
        assert not torch.equal(a.running_var, b.running_var)
    batch = Batch.from_data_list([g])
    with torch.no_grad():
        pa, pb = full.eval()(batch), sub.eval()(batch)
    assert float(torch.corrcoef(torch.stack([pa, pb]))[0, 1]) > 0.98


def test_kept_checkpoints_are_recalibrated_over_every_training_glass(synthetic_batch, tmp_path):
    """recalibrate_checkpoint writes the statistics of the saved weights over the glasses it is given
    into the file, leaving the weights and the live net alone; the fit's last step does this over
    every training glass where validation used fewer (which pulled every glass's mean towards the
    first ones)."""
    from mgglass.callbacks.calibration import recalibrate_checkpoint

    graphs = _graphs(synthetic_batch)
    net = _net()
    saved = copy.deepcopy(net)
    with torch.no_grad():
        for p in saved.parameters():
            p.add_(0.1)  # the checkpoint holds other (e.g. averaged) weights than the live net
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in saved.state_dict().items()}, "epoch": 3}, path)
    live = copy.deepcopy(net.state_dict())
    recalibrate_checkpoint(path, net, graphs)
    ref = copy.deepcopy(saved)
    recalibrate(ref, graphs)
    one = copy.deepcopy(saved)
    recalibrate(one, graphs[:1])
    state = torch.load(path, weights_only=False)["state_dict"]
    for name, buf in ref.named_buffers():
        torch.testing.assert_close(state[f"net.{name}"], buf, msg=name)
    for name, p in saved.named_parameters():
        torch.testing.assert_close(state[f"net.{name}"], p.detach(), msg=name)
    assert any((state[f"net.{n}"] - b).abs().max() > 1e-3 for n, b in one.named_buffers() if n.endswith("running_mean"))
    for name, value in net.state_dict().items():
        torch.testing.assert_close(value, live[name], msg=name)


def test_a_fit_validating_on_one_glass_keeps_checkpoints_calibrated_on_all(tmp_path):
    """The default (``experiments/base.yaml``): one training glass per validation, for time; the
    checkpoints the fit keeps get the statistics of every training glass when it ends."""
    from pathlib import Path

    import yaml
    from test_fit import SMOKE, run_cli, training_graphs

    from mgglass.task import EBTask

    assert yaml.safe_load(Path("experiments/base.yaml").read_text())["recalibrate_bn"]["max_glasses"] == 1
    p = run_cli("mgglass.fit", ["--config", SMOKE, f"--tracking.root={tmp_path}", "--tracking.run_name=one",
                                "--trainer.max_epochs=2", "--recalibrate_bn.max_glasses=1"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    best = next((tmp_path / "checkpoints" / "one").glob("best-epoch=*.ckpt"))
    graphs = training_graphs(torch.load(best, map_location="cpu", weights_only=False))
    assert len(graphs) > 1
    task = EBTask.load_from_checkpoint(best, map_location="cpu")
    saved = {n: b.clone() for n, b in task.net.named_buffers() if n.endswith("running_var")}
    recalibrate(task.net, graphs[:1])
    assert any((b - saved[n]).abs().max() > 1e-4 for n, b in task.net.named_buffers() if n in saved)
    recalibrate(task.net, graphs)
    for n, b in task.net.named_buffers():
        if n in saved:
            torch.testing.assert_close(b, saved[n], msg=n)
