"""Two (Linear, BatchNorm, ReLU) blocks on many narrow rows, in cache-sized chunks.

SymGNN's edge encoders are such a block on every edge: φ on the K transformed edge vectors
[K, E, 3] (averaged over K) and the |x| branch on [E, 1]. Run as modules, each step writes and
reads [K·E, hidden] activations a dozen times (batch-norm statistics, normalisation, ReLU, their
backward, the recomputation): memory traffic, 35% of an 8000-atom training step. Here nothing of
width ``hidden`` is kept or materialised per row:

* layer 1's batch-norm statistics are exact from the inputs' moments (z₁ = u W₁ᵀ + b₁ is linear in
  u, so mean and variance follow from Σu and uᵀu, d × d for d = 3);
* layer 2's from Σa₁ and the Gram matrix a₁ᵀa₁ (hidden × hidden), summed chunk by chunk;
* forward is then one more pass with both norms folded into the weights, and backward two passes
  that recompute each chunk: one for batch norm's column sums, one that carries the gradient down.
  The gradient reaching the inputs needs layer 1's column sums, but is affine in u given them, so
  the second pass keeps a d-wide part per row and adds the rest after.

Same numbers as the modules (float rounding; tests compare outputs, every gradient and the running
statistics), in training mode with batch statistics; anything else goes the modules' way.

Opt-in (``Symmetrizer.fused``, ``MLPBlock.fused``): on this project's 2-core CPU it measured no faster
than the modules once freed memory is kept for reuse (``mgglass.runtime.keep_freed_memory``, as every
entry point does): ±1% of a training step on one thread, 11–16% slower on two, where the modules'
large element-wise passes parallelise better than many cache-sized ones. What it still saves is
memory traffic and the activations; ``python -m mgglass.bench levers`` measures it on any machine.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# Chunk sizes are CPU cache sizes. On a GPU a loop of small kernels only adds launches (and its
# memory is the limit, not its cache), so there each pass takes up to this many values at once.
GPU_CHUNK_FLOATS = 1 << 28


def chunk_floats_for(t: Tensor, cpu: int) -> int:
    """Values per chunk for kernels on ``t``'s device: ``cpu`` (the cache-tuned default) on CPU."""
    return cpu if t.device.type == "cpu" else GPU_CHUNK_FLOATS


def update_running_stats(norm: nn.BatchNorm1d, mean: Tensor, var: Tensor, n: int) -> None:
    """Running statistics as ``nn.BatchNorm1d`` updates them from a batch's mean and biased variance."""
    if norm.running_mean is None:
        return
    norm.num_batches_tracked.add_(1)
    m = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
    norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), m)
    norm.running_var.lerp_((var * n / max(n - 1, 1)).to(norm.running_var.dtype), m)


def _linear_stats(mean_in: Tensor, cov_in: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and biased variance of x Wᵀ + b over rows whose mean is ``mean_in`` and covariance ``cov_in`` (float64)."""
    w = w.double()
    return w @ mean_in + b.double(), ((w @ cov_in) * w).sum(1).clamp_min_(0)


class _FusedMLP2(torch.autograd.Function):
    """out[e] = Σ_k w_k relu(bn₂(relu(bn₁(u[k, e] W₁ᵀ + b₁)) W₂ᵀ + b₂)), batch norms on batch statistics
    over all K·E rows. Saves only u, w and the parameters."""

    @staticmethod
    def forward(ctx, u, w, w1, b1, g1, be1, w2, b2, g2, be2, norm1, norm2, chunk_floats: int):
        k, rows, d = u.shape
        hidden, n = w2.shape[0], k * rows
        step = max(1, chunk_floats // (k * hidden))
        flat = u.reshape(n, d).double()
        su, uu = flat.sum(0), flat.t() @ flat
        mean_u = su / n
        mu1, var1 = _linear_stats(mean_u, uu / n - torch.outer(mean_u, mean_u), w1, b1)
        inv1 = torch.rsqrt(var1 + norm1.eps)
        a_w1, a_b1 = _fold(w1, b1, g1, be1, mu1, inv1, u.dtype)
        s, gram = u.new_zeros(hidden, dtype=torch.float64), u.new_zeros(hidden, hidden, dtype=torch.float64)
        for sl in _chunks(rows, step):
            a1 = _layer(u[:, sl], a_w1, a_b1)
            s += a1.sum(0, dtype=torch.float64)
            gram += (a1.t() @ a1).double()
        mean_a = s / n
        mu2, var2 = _linear_stats(mean_a, gram / n - torch.outer(mean_a, mean_a), w2, b2)
        inv2 = torch.rsqrt(var2 + norm2.eps)
        a_w2, a_b2 = _fold(w2, b2, g2, be2, mu2, inv2, u.dtype)
        out = u.new_empty(rows, hidden)
        for sl in _chunks(rows, step):
            a2 = _layer(_layer(u[:, sl], a_w1, a_b1), a_w2, a_b2)
            torch.mm(w.view(1, k), a2.view(k, -1), out=out[sl].view(1, -1))
        with torch.no_grad():
            update_running_stats(norm1, mu1, var1, n)
            update_running_stats(norm2, mu2, var2, n)
        stats = [t.to(u.dtype) for t in (mu1, inv1, mu2, inv2)]
        ctx.save_for_backward(u, w, w1, b1, g1, be1, w2, b2, g2, be2, *stats)
        ctx.step, ctx.su, ctx.uu = step, su, uu
        return out

    @staticmethod
    def backward(ctx, g_out):
        u, w, w1, b1, g1, be1, w2, b2, g2, be2, mu1, inv1, mu2, inv2 = ctx.saved_tensors
        k, rows, d = u.shape
        n, hidden = k * rows, w2.shape[0]
        g_out = g_out.contiguous()
        k1, k2 = g1 * inv1, g2 * inv2

        def recompute(sl):
            x1 = (_flat(u[:, sl]) @ w1.t()).add_(b1 - mu1).mul_(inv1)  # x̂₁
            a1 = torch.relu(x1 * g1 + be1)
            x2 = (a1 @ w2.t()).add_(b2 - mu2).mul_(inv2)  # x̂₂
            n2 = x2 * g2 + be2
            gn2 = _relu_grad((g_out[sl].unsqueeze(0) * w.view(k, 1, 1)).view(-1, hidden), n2)
            return x1, a1, x2, n2, gn2

        # pass 1: layer 2's batch-norm column sums, and ∂w
        f64 = torch.float64  # column sums in double: the closed forms below subtract large terms
        sum_gn2, sum_gn2x2 = u.new_zeros(2, hidden, dtype=f64)
        g_w = u.new_zeros(k, dtype=f64)
        for sl in _chunks(rows, ctx.step):
            _, _, x2, n2, gn2 = recompute(sl)
            sum_gn2 += gn2.sum(0)  # chunks sum in float, chunk sums in double
            sum_gn2x2 += x2.mul_(gn2).sum(0)
            if ctx.needs_input_grad[1]:
                g_w += torch.relu_(n2).view(k, -1) @ g_out[sl].reshape(-1)
        # pass 2: ∂z₂ -> ∂(W₂, b₂), ∂a₁ -> layer 1's column sums, and the per-row part of ∂u
        c2a, c2b = (sum_gn2 / n).to(u.dtype), (sum_gn2x2 / n).to(u.dtype)
        g_w2, g_b2 = torch.zeros_like(w2, dtype=f64), torch.zeros_like(b2, dtype=f64)
        sum_gn1, sum_gn1x1 = u.new_zeros(2, hidden, dtype=f64)
        gn1_u = u.new_zeros(hidden, d, dtype=f64)
        need_u = ctx.needs_input_grad[0]
        g_u = torch.empty_like(u) if need_u else None
        for sl in _chunks(rows, ctx.step):
            x1, a1, x2, _, gn2 = recompute(sl)
            gz2 = gn2.sub_(c2a).sub_(x2.mul_(c2b)).mul_(k2)
            g_w2 += gz2.t() @ a1
            g_b2 += gz2.sum(0)
            gn1 = _relu_grad(gz2 @ w2, a1)
            sum_gn1 += gn1.sum(0)
            gn1_u += gn1.t() @ _flat(u[:, sl])
            if need_u:
                g_u[:, sl] = (gn1 @ (w1 * k1[:, None])).view(k, -1, d)
            sum_gn1x1 += x1.mul_(gn1).sum(0)
        # layer 1: ∂z₁ = k₁ (∂n₁ − c_a − x̂₁ c_b) row by row, summed in closed form over the rows
        c1a, c1b = sum_gn1 / n, sum_gn1x1 / n
        su, uu = ctx.su, ctx.uu
        w1d, k1d, inv1d, shift1 = w1.double(), k1.double(), inv1.double(), (b1 - mu1).double()
        x1_u = inv1d[:, None] * (w1d @ uu + torch.outer(shift1, su))  # Σ_rows x̂₁ᵀ u
        sum_x1 = inv1d * (w1d @ su + n * shift1)  # Σ_rows x̂₁ (0 up to rounding)
        g_w1 = k1d[:, None] * (gn1_u - torch.outer(c1a, su) - c1b[:, None] * x1_u)
        g_b1 = k1d * (sum_gn1 - n * c1a - c1b * sum_x1)
        if need_u:  # ∂u = (∂n₁ k₁) W₁ − (k₁ c_a) W₁ − (x̂₁ k₁ c_b) W₁, with x̂₁ affine in u
            c = k1d * c1b * inv1d
            g_u -= (u @ ((w1d.t() * c) @ w1d).to(u.dtype)) + ((k1d * c1a + c * shift1) @ w1d).to(u.dtype)
        grads = (g_w, g_w1, g_b1, sum_gn1x1, sum_gn1, g_w2, g_b2, sum_gn2x2, sum_gn2)
        return g_u, *(t.to(u.dtype) for t in grads), None, None, None


def _relu_grad(g: Tensor, out: Tensor) -> Tensor:
    """``g`` where ReLU's output (or input) ``out`` is positive, else 0, in place on ``g``."""
    return torch.ops.aten.threshold_backward.grad_input(g, out, 0.0, grad_input=g)


def _chunks(rows: int, step: int):
    return (slice(s, s + step) for s in range(0, rows, step))


def _flat(u: Tensor) -> Tensor:
    return u.reshape(-1, u.shape[-1])


def _fold(w, b, gamma, beta, mu, inv, dtype) -> tuple[Tensor, Tensor]:
    """(W', b') with bn(x Wᵀ + b) = x W'ᵀ + b' for a batch norm with mean ``mu``, inverse std ``inv``."""
    scale = gamma.double() * inv
    return (w.double() * scale[:, None]).to(dtype), ((b.double() - mu) * scale + beta.double()).to(dtype)


def _layer(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    return torch.relu_(torch.addmm(b, _flat(x), w.t()))


def fusable(block: nn.Sequential) -> bool:
    """(Linear, BatchNorm1d, ReLU) × 2 with affine, stat-tracking or batch-only norms: what the kernel computes."""
    kinds = (nn.Linear, nn.BatchNorm1d, nn.ReLU) * 2
    if len(block) != 6 or not all(type(m) is t for m, t in zip(block, kinds)):
        return False
    lin1, bn1, _, lin2, bn2, _ = block
    return lin1.bias is not None and lin2.bias is not None and bn1.affine and bn2.affine


def uses_batch_stats(block: nn.Sequential) -> bool:
    return all(m.training or m.running_mean is None for m in (block[1], block[4]))


CHUNK_FLOATS = 1 << 18  # 1 MB per [K, rows, hidden] chunk: 1 << 16 to 1 << 19 measured alike, 1 << 14 slower


def fused_mlp2(u: Tensor, w: Tensor, block: nn.Sequential, chunk_floats: int | None = None) -> Tensor:
    """Σ_k w_k block(u[k]) for ``u`` [K, R, d], ``w`` [K] and a :func:`fusable` ``block`` whose batch
    norms use batch statistics (over all K·R rows, as ``block`` on the stacked rows would), -> [R, hidden].
    ``chunk_floats``: values per [K, rows, hidden] chunk (None: the device's default; results do not depend on it)."""
    lin1, bn1, _, lin2, bn2, _ = block
    return _FusedMLP2.apply(u.contiguous(), w, lin1.weight, lin1.bias, bn1.weight, bn1.bias, lin2.weight, lin2.bias,
                            bn2.weight, bn2.bias, bn1, bn2, chunk_floats or chunk_floats_for(u, CHUNK_FLOATS))


@torch.no_grad()
def folded_mlp2(u: Tensor, w: Tensor, block: nn.Sequential, chunk_floats: int | None = None) -> Tensor:
    """:func:`fused_mlp2` with the batch norms' running statistics (eval): each norm folded into its
    Linear, the chunk's activations kept in cache."""
    lin1, bn1, _, lin2, bn2, _ = block
    k, rows, _ = u.shape
    hidden = lin2.weight.shape[0]
    folded = [_fold(lin.weight, lin.bias, bn.weight, bn.bias, bn.running_mean.double(),
                    torch.rsqrt(bn.running_var.double() + bn.eps), u.dtype) for lin, bn in ((lin1, bn1), (lin2, bn2))]
    out = u.new_empty(rows, hidden)
    chunk_floats = chunk_floats or chunk_floats_for(u, CHUNK_FLOATS)
    for sl in _chunks(rows, max(1, chunk_floats // (k * hidden))):
        a2 = _layer(_layer(u[:, sl], *folded[0]), *folded[1])
        torch.mm(w.view(1, k), a2.view(k, -1), out=out[sl].view(1, -1))
    return out


class MLPBlock(nn.Sequential):
    """(Linear, BatchNorm, ReLU) blocks (:func:`mgglass.models.egat.mlp_block`); two of them on at
    least ``fused_min_rows`` rows (edges) run as one chunked kernel (:func:`fused_mlp2`,
    :func:`folded_mlp2`). Same parameters and state dict as the plain ``nn.Sequential``."""

    fused_min_rows = 1 << 15  # per-atom blocks (8000 rows) stay plain: the modules are as fast there
    fused = False  # opt-in, as Symmetrizer.fused: no faster than the modules on CPU (docs/notes/benchmarks.md)

    def forward(self, x: Tensor) -> Tensor:
        if not (self.fused and x.dim() == 2 and x.shape[0] >= self.fused_min_rows and fusable(self)):
            return super().forward(x)
        one = x.new_ones(1)
        if torch.is_grad_enabled() and uses_batch_stats(self):
            return fused_mlp2(x.unsqueeze(0), one, self)
        if not torch.is_grad_enabled() and all(not m.training and m.running_mean is not None for m in (self[1], self[4])):
            return folded_mlp2(x.unsqueeze(0), one, self)
        return super().forward(x)
