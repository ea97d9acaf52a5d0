"""EGAT message passing (Kamiński et al. 2022, as in DGL's ``EGATConv``) and the SymGNN prediction module.

One layer updates node and edge features. Per edge ``s -> d`` and head ``k``::

    f_sd   = leaky_relu(W [h_s ‖ e_sd ‖ h_d] + b)          # new edge feature, [H, C]
    a_sd   = softmax_{s in N(d)}(<attn_k, f_sd,k>) * mask_sd   # attention over incoming edges
    h'_d   = sum_s (a_sd,k + c * mask_sd) * (V h_s)_k            # new node feature, [H, C]

(``c = cardinality``, 0 by default: the softmax alone averages, so a node cannot tell how many
neighbours it has; c > 0 adds an unnormalised sum, Zhang & Xie 2020's additive cardinality-preserved
attention) then heads are concatenated (averaged in the last layer), batch-normalised, projected back to the
width and added to the layer input (residual). The cost is arithmetic and memory traffic on [E, H·C]
tensors (266 MB each per 8000-atom glass at 8 heads), so: the node parts of W are applied once per
atom and gathered, leaving a width-deep product per edge; softmax uses segment reductions and
messages are summed at dst by one CSR product per head (edges come sorted by dst), never
materialising [E, H, C]; custom backward passes keep no per-edge per-head copies beyond f.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Collection

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import record_function
from torch_scatter import gather_csr, segment_csr

from .dropout import Dropout
from .fused import MLPBlock, chunk_floats_for, update_running_stats

warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)

# Names of the stages a forward pass is timed by (torch.profiler scopes; ``mgglass.bench profile``).
STAGES = {
    "encoding": "mgglass: edge encoding",
    "edge": "mgglass: edge features + projection",
    "attention": "mgglass: attention softmax",
    "aggregation": "mgglass: message gather + scatter",
    "node": "mgglass: node update",
    "range": "mgglass: per-range src parts",
    "decoder": "mgglass: decoder",
    "order": "mgglass: spatial atom order",
}


class EdgePlan:
    """The edge set grouped by dst (CSR), built once per forward and shared by all layers.

    Aggregation at dst runs as one sparse (CSR) × dense product per head, which reads each message
    once and never materialises [E, H, C]; softmax uses segment reductions. Edges in a batch come
    sorted by dst (see ``mgglass.data``); otherwise ``order`` sorts them (stable, e.g. for explainer
    subgraphs) and per-edge values are permuted into that order.
    """

    def __init__(self, edge_index: Tensor, num_nodes: int):
        src, dst = edge_index[0], edge_index[1]
        self.num_nodes, self.num_edges = num_nodes, src.numel()
        self.order = None if bool((dst[1:] >= dst[:-1]).all()) else torch.argsort(dst, stable=True)
        if self.order is not None:
            src, dst = src[self.order], dst[self.order]
        self.src, self.dst = src, dst  # in dst order
        self.ptr = torch.cat([dst.new_zeros(1), torch.bincount(dst, minlength=num_nodes).cumsum(0)])
        self.num_src, self.edges = num_nodes, slice(0, self.num_edges)

    def dst_range(self, d0: int, d1: int) -> EdgePlan:
        """The plan of the edges into atoms d0..d1-1 (``edges``: their slice here; ``dst`` counted from
        d0, ``src`` among all atoms). Needs edges already in dst order."""
        if self.order is not None:
            raise ValueError("dst_range needs edges sorted by dst")
        e0, e1 = int(self.ptr[d0]), int(self.ptr[d1])
        sub = EdgePlan.__new__(EdgePlan)
        sub.num_nodes, sub.num_src, sub.num_edges, sub.order, sub.edges = d1 - d0, self.num_src, e1 - e0, None, slice(e0, e1)
        sub.src, sub.dst, sub.ptr = self.src[e0:e1], self.dst[e0:e1] - d0, self.ptr[d0 : d1 + 1] - e0
        return sub

    def to_dst_order(self, x: Tensor) -> Tensor:
        return x if self.order is None else x.index_select(0, self.order)

    def matrix(self, values: Tensor) -> Tensor:
        """[dst atoms, src atoms] CSR with ``values`` [E] (dst order) at (dst, src)."""
        return torch.sparse_csr_tensor(self.ptr, self.src, values, (self.num_nodes, self.num_src), check_invariants=False)


class _GatherWeightScatter(torch.autograd.Function):
    """out[d, k] = sum_{e: dst(e)=d} a[e, k] * x[src(e), k] for each head k, as per-head CSR products.

    ``a`` is in the plan's dst order. Backward gathers grad[dst(e)] in edge chunks, so the
    [chunk, H, C] temporaries stay in cache (one [E, H, C] gather is 266 MB at 8 heads and ~7× slower),
    and from each chunk takes ∂a[e] = <grad[dst(e)], x[src(e)]> and adds a[e]·grad[dst(e)] into ∂x at
    src (a transposed CSR would need a sort by src, which costs more than the whole backward).
    """

    chunk_floats = 1 << 19  # default: 2 MB per [chunk, H, C] temporary

    @staticmethod
    def forward(ctx, x: Tensor, a: Tensor, plan: EdgePlan, chunk_floats: int | None = None) -> Tensor:
        ctx.save_for_backward(x, a)
        ctx.plan, ctx.chunk_floats = plan, chunk_floats or chunk_floats_for(x, _GatherWeightScatter.chunk_floats)
        return torch.stack([plan.matrix(a[:, k]) @ x[:, k] for k in range(x.shape[1])], 1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, a = ctx.saved_tensors
        plan, grad = ctx.plan, grad.contiguous()
        need_x, need_a = ctx.needs_input_grad[:2]
        grad_x = torch.zeros_like(x) if need_x else None
        grad_a = torch.empty_like(a) if need_a else None
        step = max(1, ctx.chunk_floats // x[0].numel())
        for s in range(0, plan.num_edges if need_x or need_a else 0, step):
            sl = slice(s, s + step)
            g = grad.index_select(0, plan.dst[sl])
            if need_a:
                torch.sum(x.index_select(0, plan.src[sl]).mul_(g), -1, out=grad_a[sl])
            if need_x:
                grad_x.index_add_(0, plan.src[sl], g.mul_(a[sl].unsqueeze(-1)))
        return grad_x, grad_a, None, None


def gather_weight_scatter(x: Tensor, a: Tensor, plan: EdgePlan, chunk_floats: int | None = None) -> Tensor:
    """[N, H, C] node values, [E, H] weights in ``plan``'s dst order -> [N, H, C] weighted sums at dst
    (backward in edge chunks of ``chunk_floats`` values; None: the kernel's default)."""
    return _GatherWeightScatter.apply(x.contiguous(), a.contiguous(), plan, chunk_floats)


def masked_attention(a: Tensor, mask: Tensor, plan: EdgePlan) -> Tensor:
    """Attention ``a`` [E, H] with edges weighted by ``mask`` [E] (dst order) and renormalised per node:
    what the softmax gives on a graph without the masked edges when the mask is 0/1, so a mask means
    "this neighbour is (partly) absent". A uniform mask changes nothing; a node whose edges are all
    masked to 0 receives no message. (Scaling the weights without renormalising, as DGL's ``edge_weight``
    and PyG's GAT explain masks do, feeds the next batch norm sums the model never saw: with a uniform
    mask of 0.5 a trained model's prediction moved by ~8 label std, and GNNExplainer ranked the edges
    that compensate for that shift, not those the prediction depends on.)"""
    a = a * mask.unsqueeze(-1)
    total = gather_csr(segment_csr(a, plan.ptr, reduce="sum"), plan.ptr)
    return a / total.clamp_min(torch.finfo(a.dtype).tiny)


def segment_softmax(logits: Tensor, plan: EdgePlan) -> Tensor:
    """Softmax over each node's incoming edges, ``logits`` [E, H] in dst order (contiguous segments)."""
    with torch.no_grad():  # the shift cancels in the softmax, so it needs no gradient
        shift = gather_csr(segment_csr(logits, plan.ptr, reduce="max"), plan.ptr)
    ex = (logits - shift).exp()
    return ex / gather_csr(segment_csr(ex, plan.ptr, reduce="sum"), plan.ptr)


class _EdgeTransform(torch.autograd.Function):
    """f = leaky_relu(e W_eᵀ + p_src[src] + p_dst[dst]), the per-edge part of W[h_s ‖ e ‖ h_d] + b.

    The node parts p_src = h W_sᵀ and p_dst = h W_dᵀ + b are computed once per atom (N rows, by the
    caller's ``nn.Linear``s) and gathered here, so the per-edge product has K = width rather than the
    concatenation's 3·width: a third of the arithmetic, which dominated the step. The gathers go
    chunk by chunk into a cache-sized buffer that is the product's addend. Only e, W_e and f are kept
    for backward; ∂p_src and ∂p_dst are index_adds of ∂f at src and dst.
    """

    chunk_floats = 1 << 19  # default: 2 MB per [chunk, H·C] buffer (measured: 1 << 16 to 1 << 20 are within 10%)

    @staticmethod
    def forward(ctx, p_src, p_dst, e, w_e, src, dst, slope: float, chunk_floats: int | None = None):
        f, _ = _edge_features(p_src, p_dst, e, w_e, src, dst, slope, chunk_floats or chunk_floats_for(e, _EdgeTransform.chunk_floats))
        ctx.save_for_backward(e, w_e, f, src, dst)
        ctx.num_nodes, ctx.slope = p_src.shape[0], slope
        return f

    @staticmethod
    def backward(ctx, gf):
        e, w_e, f, src, dst = ctx.saved_tensors
        gp = _leaky_relu_grad(gf, f, ctx.slope)
        return *_edge_feature_grads(gp, e, w_e, src, dst, ctx.num_nodes), None, None, None, None


def _edge_features(p_src, p_dst, e, w_e, src, dst, slope: float, chunk_floats: int, sums: bool = False):
    """(f [E, H·C], (Σ_e f, Σ_e f²) if ``sums`` else None), the sums taken while each chunk is in cache."""
    num_edges, hc = e.shape[0], w_e.shape[0]
    f = e.new_empty(num_edges, hc)
    step = max(1, chunk_floats // hc)
    buf = e.new_empty(min(step, num_edges), hc)
    w_t = w_e.t()
    s1, s2 = e.new_zeros(2, hc, dtype=torch.float64) if sums else (None, None)
    for s in range(0, num_edges, step):
        sl = slice(s, s + step)
        fc, b = f[sl], buf[: f[sl].shape[0]]
        _edge_chunk(p_src, p_dst, e, w_t, src, dst, sl, slope, fc, b)  # while the chunk is in cache
        if sums:
            s1 += fc.sum(0)
            s2 += torch.mul(fc, fc, out=b).sum(0)
    return f, ((s1, s2) if sums else None)


def _edge_chunk(p_src, p_dst, e, w_t, src, dst, sl: slice, slope: float, out: Tensor, buf: Tensor) -> Tensor:
    """leaky_relu(e W_eᵀ + p_src[src] + p_dst[dst]) for the edges ``sl``, built in place in ``out``
    (``buf``: scratch of its shape; addmm with out= would first copy its addend there)."""
    torch.index_select(p_src, 0, src[sl], out=out)
    out.add_(torch.index_select(p_dst, 0, dst[sl], out=buf)).addmm_(e[sl], w_t)
    return F.leaky_relu_(out, slope)


def _edge_feature_grads(gp: Tensor, e: Tensor, w_e: Tensor, src: Tensor, dst: Tensor, num_nodes: int):
    """∂(p_src, p_dst, e, W_e) of e W_eᵀ + p_src[src] + p_dst[dst] from its output gradient ``gp``."""
    grad_src = gp.new_zeros(num_nodes, gp.shape[1]).index_add_(0, src, gp)
    grad_dst = gp.new_zeros(num_nodes, gp.shape[1]).index_add_(0, dst, gp)
    return grad_src, grad_dst, gp @ w_e, gp.t() @ e


def _leaky_relu_grad(gf: Tensor, f: Tensor, slope: float) -> Tensor:
    # In place (f is internal to the layer, so nothing else holds its gradient): a fresh [E, H·C]
    # buffer costs ~6× the arithmetic in page faults. The sign of f is that of its input.
    out = gf if gf.is_contiguous() else torch.empty_like(f)  # not, e.g., an expanded one
    return torch.ops.aten.leaky_relu_backward.grad_input(gf, f, slope, True, grad_input=out)


class _Ctx:
    """Stand-in ``ctx`` to run another Function's forward/backward inside a fused one."""

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors


class _EdgeBlock(torch.autograd.Function):
    """``batch_norm_linear(_EdgeTransform(...), norm, lin, extra)`` as one Function.

    Forward takes the batch-norm sums while each chunk of f is in cache. Backward runs edge chunk by
    edge chunk: ∂f = g [W_eff; U] + f·α + β (batch norm's terms are per-column α, β from gᵀf), its
    leaky-ReLU gradient, and the products and index_adds that carry it to ∂(p_src, p_dst, e, W_e)
    all act on a cache-sized chunk, so no [E, H·C] gradient is ever materialised (266 MB and
    ~6 passes over it at 8 heads). With ``recompute``, f is not kept but rebuilt in backward.
    """

    chunk_floats = 1 << 20  # default: 4 MB per [chunk, H·C] buffer (larger chunks measured faster up to this)

    @staticmethod
    def forward(ctx, p_src, p_dst, e, w_e, src, dst, slope: float, chunk_floats: int | None, norm: nn.BatchNorm1d,
                norm_w, norm_b, lin_w, lin_b, extra_w, recompute: bool):
        # chunk_floats None: each pass its own default; a number: every pass (tests use tiny chunks)
        ctx.chunks = (chunk_floats or chunk_floats_for(e, _EdgeTransform.chunk_floats), chunk_floats or chunk_floats_for(e, _EdgeBlock.chunk_floats))
        f, sums = _edge_features(p_src, p_dst, e, w_e, src, dst, slope, ctx.chunks[0], _uses_batch_stats(norm))
        mean, var, batch_stats = _batch_stats(f, norm, sums)
        bnl = _Ctx()
        y, z = _BatchNormLinear.forward(bnl, f, mean, var, norm_w, norm_b, lin_w, lin_b, extra_w, norm.eps, batch_stats)
        _, *bnl_saved = bnl.saved_tensors
        ctx.save_for_backward(p_src, p_dst, e, w_e, src, dst, *([] if recompute else [f]), *bnl_saved)
        ctx.recompute, ctx.slope, ctx.batch_stats = recompute, slope, batch_stats
        return y, z

    @staticmethod
    def backward(ctx, gy, gz):
        p_src, p_dst, e, w_e, src, dst, *rest = ctx.saved_tensors
        if ctx.recompute:
            f, _ = _edge_features(p_src, p_dst, e, w_e, src, dst, ctx.slope, ctx.chunks[0])
        else:
            f, *rest = rest
        mean, invstd, weight, lin_w, w_cat, shift = rest
        g = _cat_grads(gy, gz, f, lin_w, w_cat)
        alpha, beta, param_grads = _bnl_backward_parts(g, f, lin_w.shape[0], mean, invstd, weight, lin_w, shift, ctx.batch_stats)
        num_edges, hc = f.shape
        grad_src, grad_dst = f.new_zeros(2, p_src.shape[0], hc)
        grad_e, grad_w = torch.empty_like(e), torch.zeros_like(w_e)
        step = max(1, ctx.chunks[1] // hc)
        buf = f.new_empty(min(step, num_edges), hc)
        for s in range(0, num_edges, step):
            sl = slice(s, s + step)
            fc, gc = f[sl], buf[: f[sl].shape[0]]
            torch.mm(g[sl], w_cat, out=gc)
            if alpha is not None:
                gc.addcmul_(fc, alpha).add_(beta)
            _leaky_relu_grad(gc, fc, ctx.slope)  # in place on the chunk buffer
            torch.mm(gc, w_e, out=grad_e[sl])
            grad_w.addmm_(gc.t(), e[sl])
            grad_src.index_add_(0, src[sl], gc)
            grad_dst.index_add_(0, dst[sl], gc)
        return grad_src, grad_dst, grad_e, grad_w, None, None, None, None, None, *param_grads, None


@torch.no_grad()
def _edge_block_eval(p_src, p_dst, e, w_e, src, dst, slope: float, chunk_floats: int | None, norm: nn.BatchNorm1d,
                     lin: nn.Linear, extra_w: Tensor) -> tuple[Tensor, Tensor]:
    """``_EdgeBlock``'s forward with the norm's running statistics (evaluation, no gradient), edge chunk
    by edge chunk: each chunk's f goes straight into the projection while in cache, so the [E, H·C]
    edge features are never materialised (266 MB per 8000-atom glass at 8 heads, 2 GB at 64,000)."""
    _, _, w_cat, b_cat = _folded_projection(norm.running_mean, norm.running_var, norm.weight, norm.bias, lin.weight,
                                            lin.bias, extra_w, norm.eps)
    w_cat = w_cat.t()
    num_edges, hc, k = e.shape[0], w_e.shape[0], lin.weight.shape[0]
    step = max(1, (chunk_floats or chunk_floats_for(e, _EdgeTransform.chunk_floats)) // hc)
    y, z = e.new_empty(num_edges, k), e.new_empty(num_edges, extra_w.shape[0])
    buf, buf2 = e.new_empty(2, min(step, num_edges), hc)
    out = e.new_empty(min(step, num_edges), w_cat.shape[1])
    w_t = w_e.t()
    for s in range(0, num_edges, step):
        sl = slice(s, s + step)
        rows = e[sl].shape[0]
        o = out[:rows]
        torch.addmm(b_cat, _edge_chunk(p_src, p_dst, e, w_t, src, dst, sl, slope, buf[:rows], buf2[:rows]), w_cat, out=o)
        y[sl], z[sl] = o[:, :k], o[:, k:]
    return y, z


def _cat_grads(gy: Tensor | None, gz: Tensor | None, x: Tensor, lin_w: Tensor, w_cat: Tensor) -> Tensor:
    """[∂y ‖ ∂z] with zeros for an output that got no gradient."""
    n, k = x.shape[0], lin_w.shape[0]
    gy = x.new_zeros(n, k) if gy is None else gy
    gz = x.new_zeros(n, w_cat.shape[0] - k) if gz is None else gz
    return torch.cat([gy, gz], 1)


def _bnl_backward_parts(g, x, k, mean, invstd, weight, lin_w, shift, batch_stats: bool):
    """For (y, z) = batch_norm_linear(x): per-column (α, β) such that ∂x = g [W_eff; U] + x·α + β
    (None, None without batch statistics), and the gradients of (γ, β_bn, W, b, U)."""
    n = x.shape[0]
    gx_all = g.t() @ x  # [out + extra, C]: gyᵀx and gzᵀx in one pass over x
    gyx, grad_extra = gx_all[:k], gx_all[k:]
    sum_gy = g[:, :k].sum(0)
    sum_gz = sum_gy @ lin_w  # Σ_e ∂L/∂u, u = x̂ γ + β
    sum_gz_xhat = ((lin_w * gyx).sum(0) - mean * sum_gz) * invstd
    alpha = beta = None
    if batch_stats:  # μ and σ² depend on x
        scale = weight * invstd
        c = sum_gz_xhat / n
        alpha = -invstd * scale * c
        beta = -scale * sum_gz / n + mean * invstd * scale * c
    grad_lin_w = gyx * (weight * invstd) + torch.outer(sum_gy, shift)
    return alpha, beta, (sum_gz_xhat, sum_gz, grad_lin_w, sum_gy, grad_extra)


def _folded_projection(mean, var, weight, bias, lin_w, lin_b, extra_w, eps: float):
    """(invstd, shift, [W_eff; U], [b_eff; 0]) with lin(norm(x)) = x W_effᵀ + b_eff for a batch norm of
    mean ``mean`` and variance ``var``, and ``x Uᵀ`` (``extra_w``) riding along in the same product."""
    invstd = torch.rsqrt(var + eps)
    scale = weight * invstd
    shift = bias - mean * scale
    w_cat = torch.cat([lin_w * scale, extra_w])
    b_cat = torch.cat([lin_b + lin_w @ shift, lin_b.new_zeros(extra_w.shape[0])])
    return invstd, shift, w_cat, b_cat


class _BatchNormLinear(torch.autograd.Function):
    """(y, z) = ((x̂ γ + β) Wᵀ + b, x Uᵀ) with x̂ = (x − μ)·invstd, keeping only x for backward.

    Batch norm is folded into the weights, so both outputs come from one product x [W_eff; U]ᵀ and
    backward needs one [E, C] buffer for ∂L/∂x; Σ_e (gy W)∘x comes from the small matrix gyᵀx.
    ``U`` carries the attention vectors (block-diagonal), so the logits ride along with the projection.
    """

    @staticmethod
    def forward(ctx, x, mean, var, weight, bias, lin_w, lin_b, extra_w, eps: float, batch_stats: bool):
        invstd, shift, w_cat, b_cat = _folded_projection(mean, var, weight, bias, lin_w, lin_b, extra_w, eps)
        out = torch.addmm(b_cat, x, w_cat.t())
        ctx.save_for_backward(x, mean, invstd, weight, lin_w, w_cat, shift)
        ctx.batch_stats = batch_stats
        k = lin_w.shape[0]
        return out[:, :k].contiguous(), out[:, k:].contiguous()

    @staticmethod
    def backward(ctx, gy, gz):
        x, mean, invstd, weight, lin_w, w_cat, shift = ctx.saved_tensors
        g = _cat_grads(gy, gz, x, lin_w, w_cat)
        alpha, beta, param_grads = _bnl_backward_parts(g, x, lin_w.shape[0], mean, invstd, weight, lin_w, shift, ctx.batch_stats)
        grad_x = g @ w_cat
        if alpha is not None:
            grad_x.addcmul_(x, alpha).add_(beta)
        return grad_x, None, None, *param_grads, None, None


def _uses_batch_stats(norm: nn.BatchNorm1d) -> bool:
    return norm.training or norm.running_mean is None


def _batch_stats(x: Tensor, norm: nn.BatchNorm1d, sums: tuple[Tensor, Tensor] | None = None):
    """(μ, σ², from_batch) for ``norm`` on x [E, C], updating its running statistics in training.
    ``sums``: (Σ x, Σ x²) over rows when the caller already has them."""
    if not _uses_batch_stats(norm):
        return norm.running_mean, norm.running_var, False
    with torch.no_grad():
        n = x.shape[0]
        s1, s2 = (x.sum(0), (x * x).sum(0)) if sums is None else sums
        mean = (s1 / n).to(x.dtype)
        var = (s2 / n - (s1 / n) ** 2).clamp_min_(0).to(x.dtype)
        if norm.training:
            update_running_stats(norm, mean, var, n)
    return mean, var, True


def batch_norm_linear(x: Tensor, norm: nn.BatchNorm1d, lin: nn.Linear, extra: Tensor | None = None):
    """``lin(norm(x))`` without keeping the normalised copy for backward (256 MB per 8000-atom glass
    at 8 heads); with ``extra`` [K, C] also returns ``x @ extra.T`` from the same product. Needs an
    affine ``norm`` and a biased ``lin``."""
    mean, var, batch_stats = _batch_stats(x, norm)
    extra_w = x.new_zeros(0, x.shape[1]) if extra is None else extra
    y, z = _BatchNormLinear.apply(
        x, mean, var, norm.weight, norm.bias, lin.weight, lin.bias, extra_w, norm.eps, batch_stats
    )
    return y if extra is None else (y, z)


class EGATLayer(nn.Module):
    """One EGAT layer with batch norm, projection back to ``node_dim``/``edge_dim`` and residuals.

    ``forward(h, e, edge_index, edge_mask=None) -> (h', e')``. ``edge_mask`` [E] weights the
    attention over each node's edges (:func:`masked_attention`), which is where a GNNExplainer mask goes.
    ``recompute_edges``: recompute the [E, H·C] edge features in backward instead of keeping them
    (−465 MB kept per 8000-atom glass at heads 8/4/2, but ~45% slower, and the lower peak lasts only
    until the heap fragments; off). ``chunk_floats``: values per cache-sized edge chunk of the fused
    kernels (None: each kernel's measured default; results do not depend on it). ``cardinality``: weight
    of an unnormalised sum of messages added to the attention-weighted mean (module docstring).
    """

    fused_eval = True  # evaluation: edge features and their projection chunk by chunk (_edge_block_eval)

    def __init__(
        self,
        node_dim: int = 32,
        edge_dim: int = 32,
        heads: int = 8,
        head_dim: int | None = None,
        concat: bool = True,
        negative_slope: float = 0.01,
        residual: bool = True,
        update_edges: bool = True,
        recompute_edges: bool = False,
        chunk_floats: int | None = None,
        cardinality: float = 0.0,
    ):
        super().__init__()
        if cardinality < 0:
            raise ValueError(f"cardinality must be >= 0, got {cardinality}")
        self.recompute_edges, self.chunk_floats, self.cardinality = recompute_edges, chunk_floats, cardinality
        c = head_dim or node_dim
        self.heads, self.head_dim, self.concat = heads, c, concat
        self.negative_slope, self.residual, self.update_edges = negative_slope, residual, update_edges
        # The edge map W[h_s ‖ e ‖ h_d] split by input; its bias lives on the edge part.
        self.fc_src = nn.Linear(node_dim, heads * c, bias=False)
        self.fc_dst = nn.Linear(node_dim, heads * c, bias=False)
        self.fc_edge = nn.Linear(edge_dim, heads * c, bias=True)
        self.fc_node = nn.Linear(node_dim, heads * c, bias=True)
        self.attn = nn.Parameter(torch.empty(heads, c))
        out = heads * c if concat else c
        self.node_norm = nn.BatchNorm1d(out)
        self.node_proj = nn.Linear(out, node_dim)
        if update_edges:  # the last layer's edge output is never read, so it has no edge head
            self.edge_norm = nn.BatchNorm1d(out)
            self.edge_proj = nn.Linear(out, edge_dim)
        self.reset_parameters()

    def reset_parameters(self):
        gain = nn.init.calculate_gain("relu")
        for lin in (self.fc_src, self.fc_dst, self.fc_edge, self.fc_node):
            nn.init.xavier_normal_(lin.weight, gain=gain)
        nn.init.zeros_(self.fc_edge.bias)
        nn.init.xavier_normal_(self.attn.view(1, *self.attn.shape), gain=gain)

    def forward(self, h: Tensor, e: Tensor, edge_index: Tensor, edge_mask: Tensor | None = None, plan: EdgePlan | None = None):
        plan = EdgePlan(edge_index, h.shape[0]) if plan is None else plan
        return self.update(h, self.fc_src(h), self.fc_node(h), e, edge_index[0], edge_index[1], plan, edge_mask)

    def update(self, h_dst: Tensor, p_src: Tensor, v_src: Tensor, e: Tensor, src: Tensor, dst: Tensor, plan: EdgePlan,
               edge_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The layer for ``plan``'s dst atoms (all, or a range: :meth:`EdgePlan.dst_range`) from the
        per-atom parts of every atom, ``p_src = fc_src(h)`` and ``v_src = fc_node(h)``; ``h_dst``: the dst
        atoms' rows of h, ``e``, ``src``, ``dst``: their edges (``dst`` counted among them)."""
        n, hc = h_dst.shape[0], self.heads * self.head_dim
        # The record_function scopes name the stages for ``python -m mgglass.bench profile`` (~µs each otherwise).
        with record_function(STAGES["edge"]):
            # W[h_s ‖ e ‖ h_d] + b as per-atom parts (the bias rides on the dst part) plus the edge part.
            p_dst = F.linear(h_dst, self.fc_dst.weight, self.fc_edge.bias)
            edge_args = (p_src, p_dst, e, self.fc_edge.weight, src, dst, self.negative_slope, self.chunk_floats)
            # <attn_k, f_k> for all heads as one product with the block-diagonal [H, H·C] matrix; where the
            # edge head reads f itself, the same product also gives the edge projection.
            attn = torch.block_diag(*self.attn.unsqueeze(1))
            fe = None
            if self.update_edges and self.concat and self.fused_eval and not torch.is_grad_enabled() and not _uses_batch_stats(self.edge_norm):
                fe, logits = _edge_block_eval(*edge_args, self.edge_norm, self.edge_proj, attn)
            elif self.update_edges and self.concat:
                norm, proj = self.edge_norm, self.edge_proj
                fe, logits = _EdgeBlock.apply(
                    *edge_args, norm, norm.weight, norm.bias, proj.weight, proj.bias, attn, self.recompute_edges
                )
            else:
                f = _EdgeTransform.apply(*edge_args)
                logits = f @ attn.t()
                if self.update_edges:
                    fe = batch_norm_linear(f.view(-1, self.heads, self.head_dim).mean(1), self.edge_norm, self.edge_proj)
        with record_function(STAGES["attention"]):
            # Attention lives in dst order (contiguous per-node segments) from here on.
            a = segment_softmax(plan.to_dst_order(logits), plan)
            mask = None if edge_mask is None else plan.to_dst_order(edge_mask)
            if mask is not None:
                a = masked_attention(a, mask, plan)
            if self.cardinality:  # a masked edge leaves the sum as it leaves the mean
                a = a + self.cardinality * (1.0 if mask is None else mask.unsqueeze(-1))
        with record_function(STAGES["aggregation"]):
            hn = gather_weight_scatter(v_src.view(-1, self.heads, self.head_dim), a, plan, self.chunk_floats)
        with record_function(STAGES["node"]):
            hn = self.node_proj(self.node_norm(hn.reshape(n, hc) if self.concat else hn.mean(1)))
            hn = hn + h_dst if self.residual else hn
        if fe is None:
            return hn, e
        return hn, (fe + e if self.residual else fe)


def mlp_block(dims: list[int]) -> nn.Sequential:
    """(Linear, BatchNorm, ReLU) for each consecutive pair of ``dims`` (an :class:`~mgglass.models.fused.MLPBlock`,
    which can run two such blocks on many rows as one kernel, opt-in).

    The ReLU works in place: batch norm's backward needs only its input, so autograd then keeps one
    activation per block instead of two (it matters on [K·E, hidden] edge inputs).
    """
    layers: list[nn.Module] = []
    for i, o in itertools.pairwise(dims):
        layers += [nn.Linear(i, o), nn.BatchNorm1d(o), nn.ReLU(inplace=True)]
    return MLPBlock(*layers)


class PredictionModule(nn.Module):
    """EGAT stack (heads 8/4/2/1; the last averages heads and updates nodes only) with dropout, then a
    per-atom decoder (Linear, BatchNorm, PReLU)×4 -> Linear(hidden, 1). ``cardinality``: :class:`EGATLayer`'s.

    ``forward(h, e, edge_index, edge_mask=None) -> Tensor[N]``.
    """

    def __init__(
        self, hidden: int = 32, heads=(8, 4, 2, 1), dropout: float = 0.25, decoder_layers: int = 4, cardinality: float = 0.0
    ):
        super().__init__()
        heads = tuple(heads)
        self.layers = nn.ModuleList(
            EGATLayer(hidden, hidden, h, concat=i < len(heads) - 1, update_edges=i < len(heads) - 1, cardinality=cardinality)
            for i, h in enumerate(heads)
        )
        self.dropout = Dropout(dropout)
        decoder = [
            m for _ in range(decoder_layers) for m in (nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.PReLU())
        ]
        self.decoder = nn.Sequential(*decoder, nn.Linear(hidden, 1))

    def features(self, h: Tensor, e: Tensor, edge_index: Tensor, edge_mask: Tensor | None = None,
                 inner: Tensor | None = None, inner_layers: Collection[int] = ()) -> Tensor:
        """Per-atom features [N, hidden] after message passing (what the decoder reads). ``inner`` [E]
        (bool): the edges the layers numbered in ``inner_layers`` (from 0) pass messages over (the others take the
        residual path there: their features pass unchanged)."""
        plan = EdgePlan(edge_index, h.shape[0])
        if inner is not None and inner_layers:
            idx = inner.nonzero().squeeze(1)  # a subset of dst-sorted edges stays sorted
            sub = (edge_index[:, idx], None if edge_mask is None else edge_mask[idx])
            sub_plan = EdgePlan(sub[0], h.shape[0])
        for i, layer in enumerate(self.layers):
            if i in inner_layers and inner is not None:
                h, e_in = layer(h, e[idx], *sub, sub_plan)
                e = e.index_copy(0, idx, e_in)
            else:
                h, e = layer(h, e, edge_index, edge_mask, plan)
            # As in the released code: dropout after every layer (edges: only where still read).
            h = self.dropout(h)
            e = self.dropout(e) if layer.update_edges else e
        return h

    @torch.no_grad()
    def features_by_dst(self, h: Tensor, encode_edges, edge_index: Tensor, dst_chunk: int,
                        inner: Tensor | None = None, inner_layers: Collection[int] = ()) -> Tensor:
        """:meth:`features` in evaluation, layer by layer over ranges of ``dst_chunk`` dst atoms: each range
        gets its edges' encodings from ``encode_edges(slice of edges)`` in the first layer and their
        updates from the range's own edge tensor after, so a glass of any size is computed once, with no halo, holding
        per edge only its features (hidden floats). Needs edges sorted by dst; same numbers as
        :meth:`features` (float rounding), ``inner`` and ``inner_layers`` included."""
        n = h.shape[0]
        plan = EdgePlan(edge_index, n)
        shell_plan = EdgePlan(edge_index[:, inner], n) if inner is not None and inner_layers else None
        # Each range's edge features between layers, [its edges, hidden], kept as separate tensors: a
        # million-atom glass's 4 GB of them then fit the heap's free pieces (left by the graph build),
        # where one [E, hidden] block needed 4 GB more (`mgglass.predict` of 10^6 atoms: peak 7.9 GiB, not 8.3).
        edges: list[Tensor | None] = [None] * len(range(0, n, dst_chunk))
        for i, layer in enumerate(self.layers):
            out = torch.empty_like(h)
            keep = layer.update_edges and i + 1 < len(self.layers)
            shell = shell_plan is not None and i in inner_layers
            for j, d0 in enumerate(range(0, n, dst_chunk)):
                whole = plan.dst_range(d0, min(d0 + dst_chunk, n))
                sub = shell_plan.dst_range(d0, min(d0 + dst_chunk, n)) if shell else whole
                with record_function(STAGES["range"]):
                    # the per-atom parts of this range's src atoms only ([N, H·C] each for all atoms would be
                    # 2 GB per million atoms in the first layer; a range's src atoms are ~2.5× its own)
                    src_atoms, sub.src = torch.unique(sub.src, return_inverse=True)
                    sub.num_src = src_atoms.numel()
                    h_src = h.index_select(0, src_atoms)
                    p_src, v_src = layer.fc_src(h_src), layer.fc_node(h_src)
                e = encode_edges(whole.edges) if i == 0 else edges[j]
                if shell:  # the range's inner edges, in the same order as in shell_plan
                    loc = inner[whole.edges].nonzero().squeeze(1)
                    out[d0 : d0 + sub.num_nodes], e_in = layer.update(h[d0 : d0 + sub.num_nodes], p_src, v_src, e[loc], sub.src, sub.dst, sub)
                    e_new = e.index_copy_(0, loc, e_in)
                else:
                    out[d0 : d0 + sub.num_nodes], e_new = layer.update(h[d0 : d0 + sub.num_nodes], p_src, v_src, e, sub.src, sub.dst, sub)
                edges[j] = e_new if keep else None  # no later range reads this range's edges in this layer
            h = self.dropout(out)
        return h

    def forward(self, h: Tensor, e: Tensor, edge_index: Tensor, edge_mask: Tensor | None = None) -> Tensor:
        return self.decoder(self.features(h, e, edge_index, edge_mask)).squeeze(-1)
