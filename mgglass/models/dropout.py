"""``nn.Dropout`` with a cheaper mask on CPU.

On CPU, torch draws a dropout mask with one Bernoulli sample per element: ~70 ms for a [260k, 32]
edge tensor (one 8000-atom glass), 14% of a SymGNN training step. Here each element's keep/drop
decision is one 16-bit slice of raw 64-bit random words (~10 ms). Elements are kept with
probability 1 − round(65536·p)/65536 (exact for p = 0.25) and scaled by its inverse. The random
numbers come from torch's default generator, so ``seed_everything`` makes masks reproducible, but
they differ from ``nn.Dropout``'s under the same seed. On other devices this is ``nn.Dropout``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> tuple[Tensor, float]:
    """(bool mask of ``shape``, each True with probability ≈ 1 − p; the unbiasing scale)."""
    n = math.prod(shape)
    threshold = round(p * 65536)
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # all 64 bits random
    mask = words.view(torch.int16)[:n] >= threshold - 32768
    return mask.view(shape), 65536 / (65536 - threshold)


# Every dropout layer: the public classes under torch's private base ``nn.modules.dropout._DropoutNd``
# (tests/test_compat.py checks the list is complete); this module's Dropout is an nn.Dropout.
DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


class _MaskScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, mask: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(mask)  # 1 byte per element
        ctx.scale = scale
        return x.mul(mask).mul_(scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (mask,) = ctx.saved_tensors
        return grad.mul(mask).mul_(ctx.scale), None, None


class Dropout(nn.Dropout):
    """Drop-in for ``nn.Dropout`` (same arguments and state) with the fast CPU mask."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0 or self.p >= 1 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        return _MaskScale.apply(x, *keep_mask(x.shape, self.p))
