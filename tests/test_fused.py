"""The fused edge-encoder kernel (mgglass.models.fused) gives the modules' numbers: outputs, every
gradient (parameters, the learned distribution's, the inputs') and the batch norms' running statistics."""

import copy

import pytest
import torch
from conftest import as_after_training

from mgglass.models import fused
from mgglass.models.egat import mlp_block
from mgglass.models.symgnn import Symmetrizer


def _grads(module):
    return {k: p.grad.double() for k, p in module.named_parameters() if p.grad is not None}


def _as_accurate(ref, new, truth, floor, what):
    """``new`` is within rounding of ``truth`` (float64): no further off than ``ref`` (the modules in the
    same precision) is, times 3, or than ``floor`` of the tensor's scale. float32 rounding depends on the
    thread count and kernels (the modules' first-weight gradient on width-1 inputs is 2.5e-3 of its
    scale off double on one thread, more on two), so the bound is relative to the modules' own error;
    in float64, ``ref`` is ``truth`` and the bound is ``floor``: the kernel's algebra is exact."""
    scale = truth.abs().max().clamp_min(1e-3)
    e_ref, e_new = float((ref - truth).abs().max() / scale), float((new - truth).abs().max() / scale)
    assert e_new <= max(3 * e_ref, floor), f"{what}: {e_new:.2e} of its scale off double (the modules: {e_ref:.2e})"


def _compare(ref, new, truth, floor):
    """State (running statistics, updated parameters) and every gradient of ``new`` as accurate as ``ref``'s."""
    states = zip(ref.state_dict().items(), new.state_dict().values(), truth.state_dict().values())
    for (k, a), b, t in states:
        _as_accurate(a.double(), b.double(), t.double(), floor, f"state {k}")
    ga, gb, gt = _grads(ref), _grads(new), _grads(truth)
    assert ga.keys() == gb.keys() == gt.keys() and ga
    for k in ga:
        _as_accurate(ga[k], gb[k], gt[k], floor, f"grad {k}")


FLOORS = {torch.float64: 1e-9, torch.float32: 1e-4}


def _loss(out, target):
    return ((out - target) ** 2).mean() + out.sum() * 1e-3  # a gradient that differs per row and column


def _trio(module, dtype):
    """(the modules in ``dtype``, the fused kernel in ``dtype``, the modules in float64 as the truth)."""
    ref, new, truth = copy.deepcopy(module).to(dtype), copy.deepcopy(module).to(dtype), copy.deepcopy(module).double()
    ref.fused = truth.fused = False
    new.fused = True
    return ref, new, truth


@pytest.mark.parametrize("dtype", list(FLOORS))
@pytest.mark.parametrize("distribution,k", [("learned", 2), ("learned", 1), ("mixture", 4), ("haar", 3)])
def test_symmetrizer_fused_matches_modules(distribution, k, dtype):
    torch.manual_seed(0)
    base = Symmetrizer(hidden=16, distribution=distribution, k_train=k, recompute=False, init_log_std=-0.5).train()
    with torch.no_grad():
        for m in base.phi:  # off the identity, so the norms' own parameters matter
            if isinstance(m, torch.nn.BatchNorm1d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    mods = _trio(base, dtype)
    x = torch.randn(3001, 3, dtype=torch.float64) * 2.0 + 0.3
    target = torch.randn(3001, 16, dtype=torch.float64)
    for step in range(2):  # the second step runs on updated running statistics and parameters
        outs = []
        for mod in mods:
            dt = next(mod.parameters()).dtype
            q, w = (t.to(dt) for t in mod.weighted_sample(k, torch.Generator().manual_seed(step)))
            x_in = x.to(dt).clone().requires_grad_()
            if mod.fused:
                out = fused.fused_mlp2(x_in.unsqueeze(0) @ q, w, mod.phi, chunk_floats=16 * k * 97)  # 31 chunks
            else:
                out = mod._encode(x_in, q, w)
            mod.zero_grad()
            _loss(out, target.to(dt)).backward()
            outs.append((out.detach().double(), x_in.grad.double()))
            with torch.no_grad():
                for p in mod.parameters():
                    p.add_(p.grad, alpha=-0.05) if p.grad is not None else None
        (o_ref, gx_ref), (o_new, gx_new), (o_t, gx_t) = outs
        _as_accurate(o_ref, o_new, o_t, FLOORS[dtype], "output")
        _as_accurate(gx_ref, gx_new, gx_t, FLOORS[dtype], "input gradient")
        _compare(*mods, FLOORS[dtype])


def test_symmetrizer_forward_takes_the_fused_path():
    torch.manual_seed(1)
    enc = Symmetrizer(hidden=8).train()
    assert not enc.fused  # opt-in
    enc.fused = True
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


@pytest.mark.parametrize("dtype", list(FLOORS))
@pytest.mark.parametrize("width", [1, 5])
def test_mlp_block_fused_matches_modules(width, dtype, monkeypatch):
    torch.manual_seed(2)
    mods = _trio(mlp_block([width, 12, 12]).train(), dtype)
    monkeypatch.setattr(fused.MLPBlock, "fused_min_rows", 100)
    x = torch.rand(2500, width, dtype=torch.float64) * 5
    target = torch.randn(2500, 12, dtype=torch.float64)
    for mod in mods:
        dt = next(mod.parameters()).dtype
        _loss(mod(x.to(dt)), target.to(dt)).backward()
    # train mode again: the second step's statistics too; then eval (folded running statistics)
    for train in (True, False):
        for mod in mods:
            mod.train(train)
        with torch.set_grad_enabled(train):
            outs = [mod(x.to(next(mod.parameters()).dtype)).detach().double() for mod in mods]
        _as_accurate(*outs, FLOORS[dtype], f"output ({'train' if train else 'eval'})")
        if train:
            _compare(*mods, FLOORS[dtype])


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


@pytest.mark.parametrize("inner", [{}, {"inner_cutoff": 2.8, "inner_layers": 2}, {"inner_cutoff": 2.8, "inner_layers": [1, 3]}])
def test_predict_by_dst_ranges_equals_the_whole_forward(inner):
    """SymGNN layer by layer over ranges of dst atoms (prediction at any size, no halo) = its forward,
    also where the first layers pass messages over the shorter edges only."""
    from torch_geometric.data import Batch

    from mgglass.data import glass_to_data, make_glass
    from mgglass.data.order import spatially_ordered
    from mgglass.models.symgnn import SymGNN

    torch.manual_seed(4)
    net = SymGNN(hidden=8, heads=(4, 2, 1), k_eval=3, decoder_layers=2, edge_lengths=True, cardinality=0.03, **inner)
    as_after_training(net)
    batch = Batch.from_data_list([spatially_ordered(glass_to_data(make_glass(700, seed=5)))[0]])
    net.eval()
    with torch.no_grad():
        whole = net(batch)
        for dst_chunk in (37, 700):
            torch.testing.assert_close(net.predict_by_dst(batch, dst_chunk), whole, rtol=0, atol=1e-5)
