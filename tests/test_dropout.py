"""The cheap CPU dropout keeps F.dropout's contract: rate, scale, gradient, eval, determinism."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recsys.layers.attention import MultiHeadSelfAttention
from recsys.layers.dropout import Dropout, dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9])
def test_keep_rate_matches_p(p: float) -> None:
    torch.manual_seed(0)
    mask = keep_mask((1000, 1001), p)  # odd size: the last word is only partly used
    assert mask.dtype == torch.bool and mask.shape == (1000, 1001)
    # 1e6 draws: the standard error of the rate is under 5e-4
    assert abs(mask.float().mean().item() - (1 - p)) < 3e-3


def test_every_lane_is_uniform() -> None:
    torch.manual_seed(1)
    mask = keep_mask((400_000,), 0.5).view(-1, 4)  # column j = lane j of each 64-bit word
    for lane in range(4):
        assert abs(mask[:, lane].float().mean().item() - 0.5) < 5e-3


def test_kept_values_are_scaled_and_the_gradient_follows_the_mask() -> None:
    torch.manual_seed(2)
    x = torch.randn(300, 70, requires_grad=True)
    out = dropout(x, 0.2, training=True)
    kept = out != 0
    assert torch.allclose(out[kept], x[kept] / 0.8)
    out.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.8)


def test_eval_and_zero_p_are_the_identity_and_masks_differ_between_calls() -> None:
    x = torch.randn(50, 50)
    layer = Dropout(0.3)
    layer.eval()
    assert torch.equal(layer(x), x)
    assert torch.equal(dropout(x, 0.0, training=True), x)
    layer.train()
    assert not torch.equal(layer(x) != 0, layer(x) != 0)
    with pytest.raises(ValueError):
        Dropout(1.0)


def test_same_seed_same_mask() -> None:
    torch.manual_seed(5)
    a = keep_mask((64, 64), 0.2)
    torch.manual_seed(5)
    b = keep_mask((64, 64), 0.2)
    assert torch.equal(a, b)


def test_attention_training_path_matches_sdpa_without_dropout_effect() -> None:
    """The manual CPU path equals SDPA when every weight is kept (checks masks and scaling)."""
    torch.manual_seed(3)
    layer = MultiHeadSelfAttention(16, 4, dropout=1e-9)  # > 0 takes the manual path; keeps all
    values = torch.randn(3, 5, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    layer.train()
    manual = layer(values, mask)
    layer.eval()
    reference = layer(values, mask)
    assert torch.allclose(manual, reference, atol=1e-6)
    q = F.dropout(values, 0.0)  # the module stays usable with the eval path too
    assert torch.isfinite(q).all()
