"""SymGNN specifics: the fast EGAT layer against a naive one, the symmetrisation's sampling behaviour."""

import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import as_after_training

from mgglass.models.egat import EGATLayer
from mgglass.models.symgnn import SymGNN, Symmetrizer, haar_o3, released_rotation


def reference_egat(layer: EGATLayer, h, e, edge_index, edge_mask=None):
    """The straightforward formulation: W[h_s ‖ e ‖ h_d] on the concatenation, loops for softmax/sum."""
    src, dst = edge_index
    n, hh, c = h.shape[0], layer.heads, layer.head_dim
    w = torch.cat([layer.fc_src.weight, layer.fc_edge.weight, layer.fc_dst.weight], 1)
    f = F.leaky_relu(torch.cat([h[src], e, h[dst]], 1) @ w.T + layer.fc_edge.bias, layer.negative_slope)
    f = f.view(-1, hh, c)
    logits = (f * layer.attn).sum(-1)
    a = torch.zeros_like(logits)
    for d in dst.unique():
        a[dst == d] = torch.softmax(logits[dst == d], 0)
    if edge_mask is not None:  # the softmax over the remaining (weighted) edges
        a = a * edge_mask[:, None]
        for d in dst.unique():
            a[dst == d] = a[dst == d] / a[dst == d].sum(0).clamp_min(1e-30)
    a = a + layer.cardinality * (1.0 if edge_mask is None else edge_mask[:, None])
    v = layer.fc_node(h).view(n, hh, c)
    hn = torch.zeros(n, hh, c, dtype=h.dtype)
    for i in range(src.shape[0]):
        hn = hn.index_add(0, dst[i : i + 1], (a[i, :, None] * v[src[i]])[None])
    hn = hn.reshape(n, -1) if layer.concat else hn.mean(1)
    fe = f.reshape(f.shape[0], -1) if layer.concat else f.mean(1)
    hn = layer.node_proj(layer.node_norm(hn)) + h
    if not layer.update_edges:
        return hn, e
    return hn, layer.edge_proj(layer.edge_norm(fe)) + e


@pytest.mark.parametrize("concat,heads,update_edges", [(True, 3, True), (False, 2, True), (False, 1, False)])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("sort_dst", [False, True])
@pytest.mark.parametrize("recompute", [False, True])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("cardinality", [0.0, 0.3])
def test_fast_egat_equals_reference(concat, heads, update_edges, masked, sort_dst, recompute, training, cardinality):
    torch.manual_seed(0)
    n, m, dim = 10, 36, 6
    # Sorted edges come as batches do (no reordering inside the layer); there, tiny backward chunks:
    # 36 edges in 7 full chunks of 5 and a part.
    chunk = 5 * heads * dim if sort_dst else None
    layer = EGATLayer(dim, dim, heads, concat=concat, update_edges=update_edges, recompute_edges=recompute,
                      chunk_floats=chunk, cardinality=cardinality).double().train(training)
    with torch.no_grad():
        layer.fc_edge.bias.normal_()  # a zero bias would hide a misplaced one
        for norm in (m for m in layer.modules() if isinstance(m, torch.nn.BatchNorm1d)):
            norm.running_mean.normal_()  # eval mode must use these, not batch statistics
            norm.running_var.uniform_(0.5, 2)
    h = torch.randn(n, dim, dtype=torch.float64, requires_grad=True)
    e = torch.randn(m, dim, dtype=torch.float64, requires_grad=True)
    edge_index = torch.randint(0, n, (2, m))  # repeated pairs and isolated nodes are likely
    if sort_dst:
        edge_index = edge_index[:, torch.argsort(edge_index[1], stable=True)]
    mask = torch.rand(m, dtype=torch.float64, requires_grad=True) if masked else None
    weights = [torch.randn(n, dim, dtype=torch.float64), torch.randn(m, dim, dtype=torch.float64)]

    start = copy.deepcopy(layer.state_dict())

    def run(fn):
        layer.load_state_dict(start)  # both runs from the same running statistics
        layer.zero_grad()
        for t in (h, e, mask):
            if t is not None:
                t.grad = None
        hn, en = fn(layer, h, e, edge_index, mask)
        ((hn * weights[0]).sum() + (en * weights[1]).sum()).backward()
        grads = [t.grad.clone() for t in (h, e, mask) if t is not None]
        grads += [p.grad.clone() for p in layer.parameters()]
        return hn.detach(), en.detach(), grads, copy.deepcopy(layer.state_dict())

    fast = run(lambda lay, *a: lay(*a))
    ref = run(reference_egat)
    torch.testing.assert_close(fast[0], ref[0])
    torch.testing.assert_close(fast[1], ref[1])
    assert len(fast[2]) == len(ref[2])
    for g_fast, g_ref in zip(fast[2], ref[2]):
        torch.testing.assert_close(g_fast, g_ref)
    for name, value in ref[3].items():  # running statistics: updated once, identically (or not at all)
        torch.testing.assert_close(fast[3][name], value, msg=name)


def _rotated(batch, q):
    out = batch.clone()
    out.edge_vec = batch.edge_vec @ q.to(batch.edge_vec.dtype)
    return out


def test_haar_spread_shrinks_with_k(synthetic_batch):
    torch.manual_seed(0)
    model = SymGNN(distribution="haar", hidden=16, heads=(2, 1)).eval()  # small: the cost is K × edges
    qs = haar_o3(6, torch.Generator().manual_seed(1))
    spreads = []
    with torch.no_grad():
        for k in (1, 4, 16, 64):
            model.edge_encoder.k_eval = k
            preds = torch.stack([model(_rotated(synthetic_batch, q)) for q in qs])
            spreads.append(preds.std(0).mean().item())
    assert all(a > b for a, b in itertools.pairwise(spreads)), spreads
    assert spreads[-1] < 0.3 * spreads[0], spreads  # ~1/sqrt(K) would give 1/8


def test_fixed_is_released_transform_deterministic_and_not_invariant(synthetic_batch):
    torch.manual_seed(0)
    model = SymGNN(distribution="fixed").eval()
    q = model.edge_encoder.fixed_q
    torch.testing.assert_close(q[0], torch.eye(3, dtype=q.dtype))
    c, s = torch.cos(torch.tensor(1.0, dtype=torch.float64)), torch.sin(torch.tensor(1.0, dtype=torch.float64))
    rz = torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float64)
    r_phi = torch.tensor([[c, 0, -s], [0, 1, 0], [s, 0, c]], dtype=torch.float64)  # as released
    rx = torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64)
    torch.testing.assert_close(q[1].double(), rz @ r_phi @ rx)
    torch.testing.assert_close(released_rotation(1.0, torch.float64), rz @ r_phi @ rx)
    with torch.no_grad():
        a, b = model(synthetic_batch), model(synthetic_batch)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        # Batch statistics (train mode, no dropout) so the untrained outputs vary at O(1) across atoms.
        model.train()
        model.gnn.dropout.p = 0.0
        a = model(synthetic_batch)
        rot = model(_rotated(synthetic_batch, haar_o3(1, torch.Generator().manual_seed(3))[0]))
    assert (rot - a).abs().mean() > 0.05 * a.std()


def test_fixed_sums_the_two_encodings():
    torch.manual_seed(0)
    sym = Symmetrizer(8, "fixed").eval()
    x = torch.randn(40, 3)
    with torch.no_grad():
        expected = sym.phi(x) + sym.phi(x @ sym.fixed_q[1].float())
        torch.testing.assert_close(sym(x), expected)


def test_learned_distribution_gets_gradients_and_is_orthogonal(synthetic_batch):
    torch.manual_seed(0)
    model = SymGNN(distribution="learned", k_train=4).train()
    model(synthetic_batch).square().mean().backward()
    sym = model.edge_encoder
    for p in (sym.rot_mean, sym.rot_log_std, sym.reflect_logit):
        assert p.grad is not None and p.grad.abs().sum() > 0, p
    q = sym.sample(64).detach()
    torch.testing.assert_close(q @ q.transpose(1, 2), torch.eye(3).expand(64, 3, 3), atol=1e-5, rtol=0)
    dets = torch.linalg.det(q)
    assert (dets > 0).any() and (dets < 0).any()  # reflections start at p = 0.5


def test_mixture_weights_haar_and_gaussian_halves_exactly(synthetic_batch):
    torch.manual_seed(0)
    model = SymGNN(distribution="mixture", k_train=4).train()
    model(synthetic_batch).square().mean().backward()
    sym = model.edge_encoder
    for p in (sym.haar_logit, sym.rot_mean, sym.rot_log_std, sym.reflect_logit):
        assert p.grad is not None and p.grad.abs().sum() > 0, p
    assert sym.distribution_stats()["sym_haar_weight"] == pytest.approx(0.5)
    with torch.no_grad():
        sym.haar_logit.fill_(1.0)
    q, w = sym.weighted_sample(5, torch.Generator().manual_seed(1))
    haar_w = torch.sigmoid(torch.tensor(1.0))
    torch.testing.assert_close(w, torch.cat([(haar_w / 2).expand(2), ((1 - haar_w) / 3).expand(3)]))
    # The Haar half is exactly haar_o3's draw from the same generator; the encoding is the weighted sum.
    torch.testing.assert_close(q[:2], haar_o3(2, torch.Generator().manual_seed(1)))
    sym.eval()
    x = torch.randn(30, 3)
    with torch.no_grad():
        q, w = sym.weighted_sample(sym.k_eval, torch.Generator().manual_seed(sym.eval_seed))
        expected = sum(wk * sym.phi(x @ qk) for wk, qk in zip(w, q))
        torch.testing.assert_close(sym(x), expected)


def test_mixture_draws_follow_the_haar_weight():
    sym = Symmetrizer(8, "mixture")
    with torch.no_grad():
        sym.haar_logit.fill_(30.0)  # all Haar: mean rotation angle π/2 + 2/π
        assert sym.distribution_stats(8192)["sym_angle_mean"] == pytest.approx(math.pi / 2 + 2 / math.pi, abs=0.03)
        sym.haar_logit.fill_(-30.0)  # all Gaussian, std 1 rad per axis: far smaller angles
        assert sym.distribution_stats(8192)["sym_angle_mean"] < 1.8


def test_eval_sampling_is_reproducible(synthetic_batch):
    torch.manual_seed(0)
    model = SymGNN(distribution="learned", k_eval=8).eval()
    with torch.no_grad():
        a = model(synthetic_batch)
        torch.randn(10)  # global RNG use in between must not matter
        b = model(synthetic_batch)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_eval_chunking_matches_unchunked():
    torch.manual_seed(0)
    sym = Symmetrizer(8, "haar", k_eval=10).eval()
    x = torch.randn(30, 3)
    with torch.no_grad():
        whole = sym(x)
        sym.chunk_rows = 70  # 2 samples per chunk
        torch.testing.assert_close(sym(x), whole)


@pytest.mark.parametrize("distribution", ["learned", "haar", "fixed", "mixture"])
def test_eval_encoding_with_folded_batch_norm_is_the_definition(distribution):
    """Eval mode folds φ's batch norms into its linear layers and chunks edges: the result is still
    Σ_k w_k φ(x Q_k) with φ's own eval-mode modules, for non-trivial statistics and odd chunk sizes."""
    torch.manual_seed(0)
    sym = Symmetrizer(8, distribution, k_eval=6).double()
    with torch.no_grad():
        for m in sym.phi:
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 2)
                m.running_var.uniform_(0.2, 5)
                m.weight.uniform_(0.5, 2)
                m.bias.normal_()
    sym.eval()
    x = torch.randn(53, 3, dtype=torch.float64)
    with torch.no_grad():
        q, w = sym.weighted_sample(sym.num_samples, torch.Generator().manual_seed(sym.eval_seed))
        expected = sum(wk * sym.phi(x @ qk.double()) for wk, qk in zip(w.double(), q))
        for rows in (1 << 13, 25):  # whole, and chunks of 25 // K edges
            sym.chunk_rows = rows
            torch.testing.assert_close(sym(x), expected, rtol=1e-10, atol=1e-10)


def test_haar_o3_covers_both_components():
    q = haar_o3(500, torch.Generator().manual_seed(0), torch.float64)
    torch.testing.assert_close(q @ q.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(500, 3, 3))
    frac = (torch.linalg.det(q) > 0).double().mean().item()
    assert 0.4 < frac < 0.6
    assert q.mean(0).abs().max() < 0.1  # uniform: no preferred direction


def test_edge_mask_scales_messages(synthetic_batch):
    torch.manual_seed(0)
    model = SymGNN().eval()
    e = synthetic_batch.edge_index.shape[1]
    with torch.no_grad():
        plain = model(synthetic_batch)
        ones = model(synthetic_batch, edge_mask=torch.ones(e))
        zeros = model(synthetic_batch, edge_mask=torch.zeros(e))
    torch.testing.assert_close(plain, ones)
    assert (zeros - plain).abs().max() > 1e-3
    with torch.no_grad():  # a uniform mask only rescales what the attention renormalises
        torch.testing.assert_close(model(synthetic_batch, edge_mask=torch.full((e,), 0.3)), plain)


@pytest.mark.parametrize("cardinality", [0.0, 0.05])
def test_zero_one_edge_mask_equals_deleting_the_edges(synthetic_batch, cardinality):
    torch.manual_seed(0)
    model = SymGNN(hidden=16, heads=(2, 2, 1), cardinality=cardinality).eval()
    b = synthetic_batch
    keep = torch.rand(b.edge_index.shape[1], generator=torch.Generator().manual_seed(1)) > 0.3
    pruned = b.clone()
    pruned.edge_index, pruned.edge_vec = b.edge_index[:, keep], b.edge_vec[keep]
    with torch.no_grad():
        torch.testing.assert_close(model(b, edge_mask=keep.float()), model(pruned), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cardinality", [0.0, 0.1])
def test_cardinality_lets_a_node_count_its_neighbours(cardinality):
    """A centre with k identical neighbours: softmax attention averages them, so k is invisible; the
    cardinality-preserving sum sees it."""
    torch.manual_seed(0)
    layer = EGATLayer(4, 4, 2, cardinality=cardinality).eval()
    with torch.no_grad():
        layer.fc_edge.bias.normal_()

    def centre(k):
        h = torch.ones(k + 1, 4)
        edge_index = torch.stack([torch.arange(1, k + 1), torch.zeros(k, dtype=torch.long)])
        with torch.no_grad():
            return layer(h, torch.ones(k, 4), edge_index)[0][0]

    differs = (centre(3) - centre(6)).abs().max() > 1e-3
    assert differs == (cardinality > 0)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_linear_equals_modules(training):
    from mgglass.models.egat import batch_norm_linear

    torch.manual_seed(0)
    norm, lin = torch.nn.BatchNorm1d(6).double(), torch.nn.Linear(6, 4).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.normal_()
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2)
    ref_norm, ref_lin = torch.nn.BatchNorm1d(6).double(), torch.nn.Linear(6, 4).double()
    ref_norm.load_state_dict(norm.state_dict())
    ref_lin.load_state_dict(lin.state_dict())
    for m in (norm, ref_norm):
        m.train(training)
    x = (torch.randn(50, 6, dtype=torch.float64) * 3 + 1).requires_grad_()
    w = torch.randn(50, 4, dtype=torch.float64)
    grads = []
    for nm, ln in ((norm, lin), (ref_norm, ref_lin)):
        x.grad = None
        y = batch_norm_linear(x, nm, ln) if nm is norm else ln(nm(x))
        (y * w).sum().backward()
        grads.append([y.detach(), x.grad.clone(), nm.weight.grad, nm.bias.grad, ln.weight.grad, ln.bias.grad])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(norm.running_mean, ref_norm.running_mean)
    torch.testing.assert_close(norm.running_var, ref_norm.running_var)


def test_narrow_linear_matches_linear():
    from mgglass.models.symgnn import _NarrowLinear

    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 5).double()
    x = torch.randn(40, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(40, 5, dtype=torch.float64)
    grads = []
    for fn in (lambda t: _NarrowLinear.apply(t, lin.weight, lin.bias), lin):
        lin.zero_grad()
        x.grad = None
        y = fn(x)
        (y * w).sum().backward()
        grads.append([y.detach(), x.grad.clone(), lin.weight.grad.clone(), lin.bias.grad.clone()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("distribution", ["learned", "fixed"])
def test_recomputed_encoder_equals_kept(distribution):
    """φ recomputed in backward: same output, gradients and batch-norm running statistics, updated once."""
    torch.manual_seed(0)
    x = torch.randn(500, 3, dtype=torch.float64)
    base = Symmetrizer(16, distribution, k_train=3).double().train()
    results = []
    for recompute in (False, True):
        sym = copy.deepcopy(base)
        sym.recompute = recompute
        torch.manual_seed(1)
        xi = x.clone().requires_grad_()
        out = sym(xi)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads = {n: p.grad for n, p in sym.named_parameters()}
        results.append((out.detach(), xi.grad, grads, sym.state_dict()))
    kept, recomputed = results
    torch.testing.assert_close(recomputed[0], kept[0])
    torch.testing.assert_close(recomputed[1], kept[1])
    assert kept[2].keys() == recomputed[2].keys()
    for name in kept[2]:
        torch.testing.assert_close(recomputed[2][name], kept[2][name], msg=name)
    for name, value in kept[3].items():
        torch.testing.assert_close(recomputed[3][name], value, msg=name)
    assert int(recomputed[3]["phi.1.num_batches_tracked"]) == 1
    assert not torch.equal(recomputed[3]["phi.1.running_mean"], base.state_dict()["phi.1.running_mean"])


def test_symmetry_plot_of_a_learned_distribution_outside_no_grad(tmp_path):
    """The plot samples a distribution whose parameters require grad; it must work in a plain context
    (not only inside Lightning's test loop, which disables gradients)."""
    from mgglass.plots import symmetry_plot

    assert torch.is_grad_enabled()
    symmetry_plot(tmp_path / "angles.png", Symmetrizer(8, "learned"), n=500)
    assert (tmp_path / "angles.png").stat().st_size > 1000


def test_inner_layers_pass_messages_over_the_short_edges_only(synthetic_batch):
    """``inner_cutoff``: the first ``inner_layers`` layers read only edges shorter than it, the others keep
    their features there (residual path). With every layer inner, the network is the one on the graph
    of the short edges alone; with one, it differs from both and the long edges still get gradients."""
    torch.manual_seed(0)
    b = synthetic_batch
    short = b.edge_vec.norm(dim=-1) < 3.0
    assert 0.2 < short.float().mean() < 0.8
    pruned = b.clone()
    pruned.edge_index, pruned.edge_vec = b.edge_index[:, short], b.edge_vec[short]
    plain = SymGNN(hidden=16, heads=(2, 2, 1), edge_lengths=True, cardinality=0.05).eval()
    nets = {n: SymGNN(hidden=16, heads=(2, 2, 1), edge_lengths=True, cardinality=0.05, inner_cutoff=3.0, inner_layers=n).eval() for n in (1, 3)}
    for net in nets.values():
        net.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(nets[3](b), plain(pruned), rtol=1e-4, atol=1e-5)
        one = nets[1](b)
        assert (one - plain(b)).abs().max() > 1e-3 and (one - plain(pruned)).abs().max() > 1e-3
    vec = b.edge_vec.clone().requires_grad_()
    nets[1].train()(b.clone().update({"edge_vec": vec})).sum().backward()
    assert vec.grad[~short].abs().sum(-1).gt(0).all()
    with pytest.raises(ValueError, match="inner_layers"):
        SymGNN(heads=(2, 1), inner_cutoff=3.0, inner_layers=3)


@pytest.mark.parametrize("n_atoms", [128, 20, 5])  # 20 and 5: cells under 2 cutoffs, several images of a pair, self-images
def test_eval_pairs_encode_each_edge_pair_once_with_the_same_numbers(n_atoms):
    from torch_geometric.data import Batch

    from mgglass.data import glass_to_data, make_glass
    from mgglass.models.symgnn import reverse_pairs

    torch.manual_seed(0)
    batch = Batch.from_data_list([glass_to_data(make_glass(n_atoms, seed=4)), glass_to_data(make_glass(48, seed=5))])
    model = SymGNN(hidden=8, heads=(2, 1), k_eval=6, eval_pairs=True, edge_lengths=True)
    torch.manual_seed(0)
    as_after_training(model).eval()
    first, mirror, partner = reverse_pairs(batch)
    # every edge is encoded once or is the reverse of one that is: (src, dst, shift) -> (dst, src, -shift)
    assert torch.equal(torch.sort(torch.cat([first, partner])).values, torch.arange(batch.num_edges))
    mine = first[mirror]
    assert torch.equal(batch.edge_index[:, partner], batch.edge_index[[1, 0]][:, mine])
    torch.testing.assert_close(batch.edge_vec[partner], -batch.edge_vec[mine], atol=1e-5, rtol=0)
    with torch.no_grad():
        enc = model.edge_encoder
        x = batch.edge_vec
        torch.testing.assert_close(enc(-x), enc(x), atol=1e-5, rtol=1e-5)  # even in x
        torch.testing.assert_close(model.encode_edges(batch), model.encode_vectors(x), atol=1e-5, rtol=1e-5)
        whole = model(batch)
        model.train()
        assert not enc.even  # training draws k_train transforms as always
        model.eval()
        enc.k_eval = 1  # one transform at a time (predict --samples) is not even
        assert not enc.even
        enc.k_eval = 6
        # by ranges of atoms, pairs inside a range and across ranges (tests below): same numbers
        torch.testing.assert_close(model.predict_by_dst(batch, 7), whole, atol=1e-5, rtol=1e-5)


def encoded_rows(model) -> list[int]:
    """The number of edge vectors each of ``model``'s later ``encode_vectors`` calls encodes."""
    rows = []
    encode = model.encode_vectors
    model.encode_vectors = lambda vec: rows.append(vec.shape[0]) or encode(vec)
    return rows


@pytest.mark.parametrize("n_atoms", [128, 20, 5])
def test_ranges_encode_each_edge_pair_once_with_the_whole_glass_numbers(n_atoms):
    """Prediction by ranges of atoms (any glass size) encodes each edge pair once, as the whole glass
    does: inside a range once, across ranges in the earlier one, kept for the later."""
    from mgglass.data import glass_to_data, make_glass
    from mgglass.models.egat import EdgePlan
    from mgglass.models.symgnn import RangeEncoder, reverse_pairs

    torch.manual_seed(0)
    data = glass_to_data(make_glass(n_atoms, seed=4))
    model = as_after_training(SymGNN(hidden=8, heads=(2, 1), k_eval=6, eval_pairs=True, edge_lengths=True)).eval()
    rows = encoded_rows(model)
    plan = EdgePlan(data.edge_index, n_atoms)
    pairs = reverse_pairs(data)[0].numel()
    with torch.no_grad():
        whole = model.encode_edges(data)
        for chunk in (1, 3, 7, n_atoms):
            rows.clear()
            ranges = RangeEncoder(model, data)
            parts = [ranges(plan.dst_range(d0, min(d0 + chunk, n_atoms)).edges) for d0 in range(0, n_atoms, chunk)]
            torch.testing.assert_close(torch.cat(parts), whole, atol=1e-5, rtol=1e-5)
            assert sum(rows) == pairs < data.num_edges  # each pair once
            assert ranges.keys.numel() == 0  # every kept encoding was used
        with pytest.raises(ValueError, match="out of order"):
            RangeEncoder(model, data)(plan.dst_range(1, 2).edges)
        model.edge_encoder.k_eval = 1  # not even: every edge encoded, in its range
        rows.clear()
        ranges = RangeEncoder(model, data)
        parts = [ranges(plan.dst_range(d0, min(d0 + 3, n_atoms)).edges) for d0 in range(0, n_atoms, 3)]
        assert sum(rows) == data.num_edges
        torch.testing.assert_close(torch.cat(parts), model.encode_vectors(data.edge_vec), atol=1e-5, rtol=1e-5)


def test_ranges_encoded_afresh_the_reference_path_give_the_same_prediction(monkeypatch):
    """``RangeEncoder.paired = False`` (the speed lever's "before", ``mgglass.bench levers``) encodes every
    range's edges afresh: every edge encoded, the same prediction."""
    from mgglass.data import glass_to_data, make_glass
    from mgglass.models.symgnn import RangeEncoder

    torch.manual_seed(1)
    data = glass_to_data(make_glass(60, seed=2))
    model = as_after_training(SymGNN(hidden=8, heads=(2, 1), k_eval=6, eval_pairs=True, edge_lengths=True)).eval()
    rows = encoded_rows(model)
    with torch.no_grad():
        paired = model.predict_by_dst(data, 7)
        assert sum(rows) < data.num_edges
        rows.clear()
        monkeypatch.setattr(RangeEncoder, "paired", False)
        afresh = model.predict_by_dst(data, 7)
    assert sum(rows) == data.num_edges
    torch.testing.assert_close(afresh, paired, atol=1e-5, rtol=1e-5)


def test_eval_pairs_are_draws_and_their_negatives_where_they_apply():
    sym = Symmetrizer(8, "learned", k_eval=4, eval_pairs=True).eval()
    seen = []
    sym._encode_eval = lambda x, q, w: seen.append((q, w)) or x.new_zeros(x.shape[0], 8)
    with torch.no_grad():
        sym(torch.randn(5, 3))
    q, w = seen[0]
    plain, _ = sym.weighted_sample(2, torch.Generator().manual_seed(sym.eval_seed))
    torch.testing.assert_close(q, torch.cat([plain, -plain]))
    torch.testing.assert_close(w, torch.full((4,), 0.25))
    # no pairs where they cannot apply (a sweep over distributions keeps the option on): the same
    # encoding as without the option
    x = torch.randn(40, 3)
    for distribution, k in (("fixed", 16), ("learned", 5), ("haar", 1)):
        torch.manual_seed(0)
        on = Symmetrizer(8, distribution, k_eval=k, eval_pairs=True).eval()
        off = Symmetrizer(8, distribution, k_eval=k).eval()
        off.load_state_dict(on.state_dict())
        assert not on.even
        with torch.no_grad():
            torch.testing.assert_close(on(x), off(x), rtol=0, atol=0)
    assert SymGNN(distribution="fixed", eval_pairs=True).edge_encoder.eval_pairs  # accepted, a no-op there


def test_edges_without_their_reverse_are_all_encoded(synthetic_batch):
    from mgglass.models.symgnn import reverse_pairs

    sub = synthetic_batch.clone()
    keep = torch.arange(0, sub.num_edges, 2)  # a subgraph: most reverses gone
    sub.edge_index, sub.edge_vec, sub.edge_shift = sub.edge_index[:, keep], sub.edge_vec[keep], sub.edge_shift[keep]
    assert reverse_pairs(sub) is None
    model = SymGNN(hidden=8, heads=(2, 1), k_eval=4, eval_pairs=True)
    torch.manual_seed(0)
    as_after_training(model).eval()
    with torch.no_grad():
        torch.testing.assert_close(model.encode_edges(sub), model.encode_vectors(sub.edge_vec))


def test_train_pairs_give_the_gradients_of_encoding_every_edge(synthetic_batch, monkeypatch):
    """Training with pairs {Q, −Q} encodes each edge pair once; the batch norms' statistics and every
    gradient are those of encoding all edges (the rows ±xQ of both directions are the same multiset)."""
    from mgglass.models import symgnn

    def grads(pair_once: bool):
        if not pair_once:
            monkeypatch.setattr(symgnn, "reverse_pairs", lambda batch: None)
        torch.manual_seed(0)
        model = SymGNN(hidden=8, heads=(2, 1), dropout=0.0, k_train=2, train_pairs=True).double().train()
        assert model.edge_encoder.even
        batch = synthetic_batch.clone()
        batch.edge_vec = batch.edge_vec.double()  # double: the two paths differ only by rounding
        torch.manual_seed(1)
        model(batch).square().mean().backward()
        monkeypatch.undo()
        stats = [m.running_mean.clone() for m in model.edge_encoder.phi if isinstance(m, torch.nn.BatchNorm1d)]
        return [p.grad.clone() for p in model.parameters() if p.grad is not None], stats

    (g1, s1), (g2, s2) = grads(True), grads(False)
    assert len(g1) == len(g2) > 10
    # Biases in front of a batch norm have a zero gradient up to rounding, so compare the whole gradient.
    flat1, flat2 = torch.cat([g.flatten() for g in g1]), torch.cat([g.flatten() for g in g2])
    assert float((flat1 - flat2).norm() / flat2.norm()) < 1e-10
    for a, b in zip(s1, s2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
