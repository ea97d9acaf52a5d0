"""The fused edge-encoder kernel (mgglass.models.fused) gives the modules' numbers: outputs, every
gradient (parameters, the learned distribution's, the inputs') and the batch norms' running statistics."""

import copy

import pytest
import torch

from mgglass.models import fused
from mgglass.models.egat import mlp_block
from mgglass.models.symgnn import Symmetrizer


def _grads(module):
    return {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}


def _compare(ref, new, tol):
    """State (running statistics, updated parameters) and gradients equal within ``tol`` of each tensor's scale."""
    for (k, a), b in zip(ref.state_dict().items(), new.state_dict().values()):
        assert torch.allclose(a.double(), b.double(), rtol=tol, atol=tol), f"state {k}"
    ga, gb = _grads(ref), _grads(new)
    assert ga.keys() == gb.keys() and ga
    for k in ga:
        if k.split(".")[-2:] in (["0", "bias"], ["3", "bias"]):  # a bias before a batch norm: its gradient is 0
            assert ga[k].abs().max() < 50 * tol and gb[k].abs().max() < 50 * tol, k  # up to rounding (float32: ~1e-5)
            continue
        scale = ga[k].abs().max().clamp_min(1e-3)
        assert torch.allclose(ga[k] / scale, gb[k] / scale, atol=tol), f"grad {k}: {(ga[k] - gb[k]).abs().max()}"


# float64: the kernel's algebra is exact, so it matches the modules to rounding of double. float32:
# to rounding of float; on width-1 inputs the modules' own float32 gradient of the first weight is
# 2.5e-3 of its scale off the double one (the fused kernel's 2.6e-3), on 3- and 5-wide ones 2e-5.
TOLS = {torch.float64: 1e-9, torch.float32: 5e-3}


def _loss(out, target):
    return ((out - target) ** 2).mean() + out.sum() * 1e-3  # a gradient that differs per row and column


@pytest.mark.parametrize("dtype", list(TOLS))
@pytest.mark.parametrize("distribution,k", [("learned", 2), ("learned", 1), ("mixture", 4), ("haar", 3)])
def test_symmetrizer_fused_matches_modules(distribution, k, dtype):
    torch.manual_seed(0)
    tol = TOLS[dtype]
    ref = Symmetrizer(hidden=16, distribution=distribution, k_train=k, recompute=False, init_log_std=-0.5).train().to(dtype)
    with torch.no_grad():
        for m in ref.phi:  # off the identity, so the norms' own parameters matter
            if isinstance(m, torch.nn.BatchNorm1d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    new = copy.deepcopy(ref)
    ref.fused = False
    x = (torch.randn(3001, 3) * 2.0 + 0.3).to(dtype)
    target = torch.randn(3001, 16).to(dtype)
    for step in range(2):  # the second step runs on updated running statistics and parameters
        outs = []
        for mod in (ref, new):
            gen = torch.Generator().manual_seed(step)
            q, w = (t.to(dtype) for t in mod.weighted_sample(k, gen))
            x_in = x.clone().requires_grad_()
            if mod is ref:
                out = mod._encode(x_in, q, w)
            else:
                out = fused.fused_mlp2(x_in.unsqueeze(0) @ q, w, mod.phi, chunk_floats=16 * k * 97)  # 31 chunks
            mod.zero_grad()
            _loss(out, target).backward()
            outs.append((out.detach(), x_in.grad))
            with torch.no_grad():
                for p in mod.parameters():
                    p.add_(p.grad, alpha=-0.05) if p.grad is not None else None
        (o_ref, gx_ref), (o_new, gx_new) = outs
        assert torch.allclose(o_ref, o_new, atol=tol / 50), (o_ref - o_new).abs().max()
        assert torch.allclose(gx_ref, gx_new, atol=tol / 1000), (gx_ref - gx_new).abs().max()
        _compare(ref, new, tol)


def test_symmetrizer_forward_takes_the_fused_path():
    torch.manual_seed(1)
    enc = Symmetrizer(hidden=8).train()
    calls = []
    orig = fused._FusedMLP2.apply
    fused._FusedMLP2.apply = lambda *a: calls.append(1) or orig(*a)
    try:
        enc(torch.randn(100, 3)).sum().backward()
        with torch.no_grad():  # no gradient: the modules' way
            enc(torch.randn(100, 3))
    finally:
        fused._FusedMLP2.apply = orig
    assert calls == [1]


@pytest.mark.parametrize("dtype", list(TOLS))
@pytest.mark.parametrize("width", [1, 5])
def test_mlp_block_fused_matches_modules(width, dtype, monkeypatch):
    torch.manual_seed(2)
    tol = TOLS[dtype]
    ref = mlp_block([width, 12, 12]).train().to(dtype)
    new = copy.deepcopy(ref)
    ref.fused = False
    monkeypatch.setattr(fused.MLPBlock, "fused_min_rows", 100)
    x = (torch.rand(2500, width) * 5).to(dtype)
    target = torch.randn(2500, 12).to(dtype)
    for mod in (ref, new):
        _loss(mod(x), target).backward()
    assert torch.allclose(ref(x), new(x), atol=tol / 50)  # train mode again: the second step's statistics too
    _compare(ref, new, tol)
    ref.eval(), new.eval()
    with torch.no_grad():
        assert torch.allclose(ref(x), new(x), atol=tol / 50)  # eval: folded running statistics


def test_mlp_block_keeps_the_plain_path_for_small_or_other_blocks():
    block = mlp_block([4, 8, 8, 8])  # three blocks: not fusable
    assert not fused.fusable(block)
    assert fused.fusable(mlp_block([4, 8, 8]))
    small = mlp_block([4, 8, 8]).train()
    out = small(torch.randn(50, 4))  # below fused_min_rows
    assert out.grad_fn is not None and "Fused" not in type(out.grad_fn).__name__


def test_egat_layer_eval_fused_matches_unfused(monkeypatch):
    from mgglass.models import egat

    torch.manual_seed(3)
    n, e = 60, 700
    edge_index = torch.stack([torch.randint(0, n, (e,)), torch.arange(e) % n]).sort(dim=1).values  # dst sorted
    edge_index = edge_index[:, edge_index[1].argsort(stable=True)]
    layer = egat.EGATLayer(16, 16, heads=4, chunk_floats=64 * 7).train()  # chunks of 7 edges
    h, x = torch.randn(n, 16), torch.randn(e, 16)
    for _ in range(3):  # running statistics off their initial values
        layer(h, x, edge_index)
    layer.eval()
    with torch.no_grad():
        fused_out = layer(h, x, edge_index)
        monkeypatch.setattr(egat.EGATLayer, "fused_eval", False)
        plain_out = layer(h, x, edge_index)
    for a, b in zip(fused_out, plain_out):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_predict_by_dst_ranges_equals_the_whole_forward():
    """SymGNN layer by layer over ranges of dst atoms (prediction at any size, no halo) = its forward."""
    from torch_geometric.data import Batch

    from mgglass.data import glass_to_data, make_glass
    from mgglass.data.order import spatially_ordered
    from mgglass.models.symgnn import SymGNN

    torch.manual_seed(4)
    net = SymGNN(hidden=8, heads=(4, 2, 1), k_eval=3, decoder_layers=2, edge_lengths=True, cardinality=0.03)
    for m in net.modules():  # batch norms off their initial statistics, as after training
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    batch = Batch.from_data_list([spatially_ordered(glass_to_data(make_glass(700, seed=5)))[0]])
    net.eval()
    with torch.no_grad():
        whole = net(batch)
        for dst_chunk in (37, 700):
            torch.testing.assert_close(net.predict_by_dst(batch, dst_chunk), whole, rtol=0, atol=1e-5)
