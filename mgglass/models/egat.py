"""EGAT message passing (Kamiński et al. 2022, as in DGL's ``EGATConv``) and the SymGNN prediction module.

One layer updates node and edge features. Per edge ``s -> d`` and head ``k``::

    f_sd   = leaky_relu(W [h_s ‖ e_sd ‖ h_d] + b)          # new edge feature, [H, C]
    a_sd   = softmax_{s in N(d)}(<attn_k, f_sd,k>) * mask_sd   # attention over incoming edges
    h'_d   = sum_s a_sd,k * (V h_s)_k                            # new node feature, [H, C]

then heads are concatenated (averaged in the last layer), batch-normalised, projected back to the
width and added to the layer input (residual). The concatenated linear map is split as
``W_s h_s + W_e e_sd + W_d h_d`` so the node parts are computed once per atom and gathered, and the
weighted gather/scatter of messages keeps no per-edge per-head tensor alive for backward.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_scatter import scatter, scatter_softmax


class _GatherWeightScatter(torch.autograd.Function):
    """out[d] = sum_{e: dst(e)=d} a[e, :, None] * x[src(e)], without saving the gathered [E,H,C] messages.

    Autograd on ``x[src] * a`` would keep x[src] (E×H×C floats, 256 MB for one 8000-atom glass at
    8 heads) until backward; here backward gathers it again instead.
    """

    @staticmethod
    def forward(ctx, x: Tensor, a: Tensor, src: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
        ctx.save_for_backward(x, a, src, dst)
        msg = x.index_select(0, src).mul_(a.unsqueeze(-1))
        return scatter(msg, dst, dim=0, dim_size=num_nodes, reduce="sum")

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, a, src, dst = ctx.saved_tensors
        g = grad.index_select(0, dst)  # [E, H, C]
        grad_x = grad_a = None
        if ctx.needs_input_grad[1]:  # in place on the gathered copy: two [E, H, C] buffers alive, not three
            grad_a = x.index_select(0, src).mul_(g).sum(-1)
        if ctx.needs_input_grad[0]:
            grad_x = scatter(g.mul_(a.unsqueeze(-1)), src, dim=0, dim_size=x.shape[0], reduce="sum")
        return grad_x, grad_a, None, None, None


def gather_weight_scatter(x: Tensor, a: Tensor, src: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
    return _GatherWeightScatter.apply(x, a, src, dst, num_nodes)


class _BatchNormLinear(torch.autograd.Function):
    """(y, z) = ((x̂ γ + β) Wᵀ + b, x Uᵀ) with x̂ = (x − μ)·invstd, keeping only x for backward.

    Batch norm is folded into the weights, so both outputs come from one product x [W_eff; U]ᵀ and
    backward needs one [E, C] buffer for ∂L/∂x; Σ_e (gy W)∘x comes from the small matrix gyᵀx.
    ``U`` carries the attention vectors (block-diagonal), so the logits ride along with the projection.
    """

    @staticmethod
    def forward(ctx, x, mean, var, weight, bias, lin_w, lin_b, extra_w, eps: float, batch_stats: bool):
        invstd = torch.rsqrt(var + eps)
        scale = weight * invstd
        shift = bias - mean * scale
        w_cat = torch.cat([lin_w * scale, extra_w])
        b_cat = torch.cat([lin_b + lin_w @ shift, lin_b.new_zeros(extra_w.shape[0])])
        out = torch.addmm(b_cat, x, w_cat.t())
        ctx.save_for_backward(x, mean, invstd, weight, lin_w, w_cat, shift)
        ctx.batch_stats = batch_stats
        k = lin_w.shape[0]
        return out[:, :k].contiguous(), out[:, k:].contiguous()

    @staticmethod
    def backward(ctx, gy, gz):
        x, mean, invstd, weight, lin_w, w_cat, shift = ctx.saved_tensors
        n, k = x.shape[0], lin_w.shape[0]
        gy = torch.zeros(n, k, dtype=x.dtype, device=x.device) if gy is None else gy
        gz = torch.zeros(n, w_cat.shape[0] - k, dtype=x.dtype, device=x.device) if gz is None else gz
        g = torch.cat([gy, gz], 1)
        gx_all = g.t() @ x  # [out + extra, C]: gyᵀx and gzᵀx in one pass over x
        gyx, grad_extra = gx_all[:k], gx_all[k:]
        sum_gy = gy.sum(0)
        sum_gz = sum_gy @ lin_w  # Σ_e ∂L/∂u, u = x̂ γ + β
        sum_gz_xhat = ((lin_w * gyx).sum(0) - mean * sum_gz) * invstd
        grad_x = g @ w_cat
        if ctx.batch_stats:  # μ and σ² depend on x
            scale = weight * invstd
            c = sum_gz_xhat / n
            grad_x.addcmul_(x, (-invstd * scale * c).unsqueeze(0))
            grad_x.add_((-scale * sum_gz / n + mean * invstd * scale * c).unsqueeze(0))
        grad_lin_w = gyx * (weight * invstd) + torch.outer(sum_gy, shift)
        return grad_x, None, None, sum_gz_xhat, sum_gz, grad_lin_w, sum_gy, grad_extra, None, None


def batch_norm_linear(x: Tensor, norm: nn.BatchNorm1d, lin: nn.Linear, extra: Tensor | None = None):
    """``lin(norm(x))`` without keeping the normalised copy for backward (256 MB per 8000-atom glass
    at 8 heads); with ``extra`` [K, C] also returns ``x @ extra.T`` from the same product. Needs an
    affine ``norm`` and a biased ``lin``."""
    batch_stats = norm.training or norm.running_mean is None
    if batch_stats:
        with torch.no_grad():
            n = x.shape[0]
            mean = x.sum(0) / n
            var = ((x * x).sum(0) / n - mean * mean).clamp_min_(0)
            if norm.training and norm.running_mean is not None:
                norm.num_batches_tracked.add_(1)
                m = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
                norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), m)
                norm.running_var.lerp_((var * n / max(n - 1, 1)).to(norm.running_var.dtype), m)
    else:
        mean, var = norm.running_mean, norm.running_var
    extra_w = x.new_zeros(0, x.shape[1]) if extra is None else extra
    y, z = _BatchNormLinear.apply(
        x, mean, var, norm.weight, norm.bias, lin.weight, lin.bias, extra_w, norm.eps, batch_stats
    )
    return y if extra is None else (y, z)


class EGATLayer(nn.Module):
    """One EGAT layer with batch norm, projection back to ``node_dim``/``edge_dim`` and residuals.

    ``forward(h, e, edge_index, edge_mask=None) -> (h', e')``. ``edge_mask`` [E] multiplies the
    attention weights (as DGL's ``edge_weight``), which is where a GNNExplainer mask goes.
    """

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
    ):
        super().__init__()
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

    def forward(self, h: Tensor, e: Tensor, edge_index: Tensor, edge_mask: Tensor | None = None):
        src, dst = edge_index[0], edge_index[1]
        n, hc = h.shape[0], self.heads * self.head_dim
        # Node parts once per atom, then gathered: [E, H*C] built in place, no [E, 2N+E] concat.
        f = self.fc_edge(e)
        f += self.fc_src(h).index_select(0, src)
        f += self.fc_dst(h).index_select(0, dst)
        f = F.leaky_relu(f, self.negative_slope, inplace=True)  # in place: autograd keeps only f
        # <attn_k, f_k> for all heads as one product with the block-diagonal [H, H·C] matrix; where the
        # edge head reads f itself, the same product also gives the edge projection.
        attn = torch.block_diag(*self.attn.unsqueeze(1))
        fe = None
        if self.update_edges and self.concat:
            fe, logits = batch_norm_linear(f, self.edge_norm, self.edge_proj, extra=attn)
        else:
            logits = f @ attn.t()
            if self.update_edges:
                fe = batch_norm_linear(f.view(-1, self.heads, self.head_dim).mean(1), self.edge_norm, self.edge_proj)
        a = scatter_softmax(logits, dst, dim=0, dim_size=n)
        if edge_mask is not None:
            a = a * edge_mask.unsqueeze(-1)
        v = self.fc_node(h).view(n, self.heads, self.head_dim)
        hn = gather_weight_scatter(v, a, src, dst, n)
        hn = self.node_proj(self.node_norm(hn.reshape(n, hc) if self.concat else hn.mean(1)))
        hn = hn + h if self.residual else hn
        if fe is None:
            return hn, e
        return hn, (fe + e if self.residual else fe)

def mlp_block(dims: list[int]) -> nn.Sequential:
    """(Linear, BatchNorm, ReLU) for each consecutive pair of ``dims``.

    The ReLU works in place: batch norm's backward needs only its input, so autograd then keeps one
    activation per block instead of two (it matters on [K·E, hidden] edge inputs).
    """
    layers: list[nn.Module] = []
    for i, o in itertools.pairwise(dims):
        layers += [nn.Linear(i, o), nn.BatchNorm1d(o), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class PredictionModule(nn.Module):
    """EGAT stack (heads 8/4/2/1; the last averages heads and updates nodes only) with dropout, then a
    per-atom decoder (Linear, BatchNorm, PReLU)×4 -> Linear(hidden, 1).

    ``forward(h, e, edge_index, edge_mask=None) -> Tensor[N]``.
    """

    def __init__(self, hidden: int = 32, heads=(8, 4, 2, 1), dropout: float = 0.25, decoder_layers: int = 4):
        super().__init__()
        heads = tuple(heads)
        self.layers = nn.ModuleList(
            EGATLayer(hidden, hidden, h, concat=i < len(heads) - 1, update_edges=i < len(heads) - 1)
            for i, h in enumerate(heads)
        )
        self.dropout = nn.Dropout(dropout)
        decoder = [
            m for _ in range(decoder_layers) for m in (nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.PReLU())
        ]
        self.decoder = nn.Sequential(*decoder, nn.Linear(hidden, 1))

    def forward(self, h: Tensor, e: Tensor, edge_index: Tensor, edge_mask: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            h, e = layer(h, e, edge_index, edge_mask)
            # As in the released code: dropout after every layer (edges: only where still read).
            h = self.dropout(h)
            e = self.dropout(e) if layer.update_edges else e
        return self.decoder(h).squeeze(-1)
