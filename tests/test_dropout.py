"""The fast-mask Dropout: rate, unbiased scale, gradient, seeding, and nn.Dropout behaviour elsewhere."""

import pytest
import torch

from mgglass.models.dropout import Dropout, keep_mask


@pytest.mark.parametrize("p", [0.25, 0.5, 0.1])
def test_keep_rate_and_scale(p):
    torch.manual_seed(0)
    mask, scale = keep_mask((1000, 1000), p)
    assert mask.dtype == torch.bool and mask.shape == (1000, 1000)
    kept = mask.float().mean().item()
    assert abs(kept - (1 - p)) < 3e-3  # 1e6 draws: std ~5e-4
    assert abs(kept * scale - 1) < 5e-3  # unbiased: E[mask·scale] = 1
    assert abs(mask[:, :500].float().mean() - mask[:, 500:].float().mean()) < 5e-3  # no positional bias


def test_exact_scale_for_quarter():
    assert keep_mask((4,), 0.25)[1] == pytest.approx(4 / 3, abs=0)


def test_forward_backward_use_the_same_mask():
    torch.manual_seed(1)
    drop = Dropout(0.25).train()
    x = torch.randn(300, 32, requires_grad=True)
    y = drop(x)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] * 4 / 3)
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, kept.float() * 4 / 3)
    assert 0.6 < kept.float().mean() < 0.9


def test_seeded_and_fresh_each_call():
    drop = Dropout(0.25).train()
    x = torch.ones(1000)
    torch.manual_seed(3)
    a, b = drop(x), drop(x)
    torch.manual_seed(3)
    torch.testing.assert_close(drop(x), a)
    assert not torch.equal(a, b)


def test_identity_in_eval_and_at_zero():
    x = torch.randn(50, 8)
    assert torch.equal(Dropout(0.25).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    assert Dropout(0.25).state_dict() == {} and isinstance(Dropout(0.25), torch.nn.Dropout)
