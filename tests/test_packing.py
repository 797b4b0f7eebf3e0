"""Packed real positions (recsys/layers/packing.py): NRMS's self-attention and additive pooling on
the real positions only compute what their padded forms compute."""

from __future__ import annotations

import pytest
import torch

from recsys.layers import AdditiveAttention, Dropout, MultiHeadSelfAttention
from recsys.layers.packing import Packing
from recsys.models.nrms import attend_and_pool

# right-padded titles, a hole, an all-padding row (a padding news / an empty history) and a full
# row; the last column is padding everywhere, so the window is cut
MASK = torch.tensor([
    [True, True, True, False, False, False],
    [True, False, True, True, False, False],
    [False, False, False, False, False, False],
    [True, True, True, True, True, False],
])


def _layers(dim: int = 16, heads: int = 4, p: float = 0.0):
    torch.manual_seed(0)
    return (MultiHeadSelfAttention(dim, heads, p).double(), AdditiveAttention(dim, query_dim=12).double(),
            Dropout(p))


def _padded(values, mask, attention, pool, dropout, input_dropout=None):
    """The padded composition attend_and_pool replaces (NRMS before packing)."""
    x = values if input_dropout is None else input_dropout(values)
    return pool(dropout(attention(x, mask)), mask)


def test_pack_and_unpack_are_inverse_on_the_real_positions() -> None:
    packing = Packing.of(MASK)
    assert packing.start == 0 and packing.width == 5 and packing.batch == 4
    x = torch.arange(4 * 6, dtype=torch.float64).view(4, 6, 1)
    packed = packing.pack(x)
    assert packed.shape == (int(MASK.sum()), 1)
    assert torch.equal(packed.squeeze(1), x.squeeze(2)[MASK])  # row-major order
    assert torch.equal(packing.unpack(packed, 6), x * MASK.unsqueeze(-1))
    assert Packing.of(torch.zeros(3, 4, dtype=torch.bool)) is None
    shifted = Packing.of(torch.tensor([[False, False, True, False], [False, True, False, False]]))
    assert (shifted.start, shifted.width) == (1, 2) and shifted.padding.tolist() == [[True, False], [False, True]]


@pytest.mark.parametrize("training", [False, True])
def test_packed_self_attention_and_pooling_equal_the_padded_forms_with_their_gradients(training: bool) -> None:
    attention, pool, dropout = _layers()  # dropout 0: training mode is deterministic too
    for module in (attention, pool, dropout):
        module.train(training)
    values = torch.randn(4, 6, 16, dtype=torch.float64)
    padded_in, packed_in = values.clone().requires_grad_(), values.clone().requires_grad_()
    expected = _padded(padded_in, MASK, attention, pool, dropout)
    out = attend_and_pool(packed_in, MASK, attention, pool, dropout)
    assert torch.allclose(out, expected, atol=1e-12)
    assert torch.equal(out[2], torch.zeros(16, dtype=torch.float64))  # all padding: zeros, as the padded form
    weights = torch.randn_like(out)
    padded_grads = torch.autograd.grad((expected * weights).sum(), [padded_in, *attention.parameters(), *pool.parameters()])
    packed_grads = torch.autograd.grad((out * weights).sum(), [packed_in, *attention.parameters(), *pool.parameters()])
    for a, b in zip(packed_grads, padded_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-11)


def test_each_packed_layer_alone_equals_its_padded_form() -> None:
    attention, pool, _ = _layers()
    attention.eval()
    values = torch.randn(4, 6, 16, dtype=torch.float64)
    packing = Packing.of(MASK)
    contextual = attention.forward_packed(packing.pack(values), packing)
    assert torch.allclose(packing.unpack(contextual, 6)[MASK], attention(values, MASK)[MASK], atol=1e-12)
    assert torch.allclose(pool.forward_packed(packing.pack(values), packing), pool(values, MASK), atol=1e-12)


def test_no_real_position_in_the_batch_is_zeros() -> None:
    attention, pool, dropout = _layers()
    values = torch.randn(2, 3, 16, dtype=torch.float64)
    nothing = torch.zeros(2, 3, dtype=torch.bool)
    assert torch.equal(attend_and_pool(values, nothing, attention, pool, dropout), _padded(values, nothing, attention, pool, dropout))


def test_dropout_runs_on_the_packed_shapes_and_leaves_padding_out(monkeypatch) -> None:
    """Input and output dropout draw [T, D] masks, the attention weights [N*h, W, W]; padding
    values get no gradient; repeated under one seed."""
    import recsys.layers.dropout as dropout_module
    import recsys.layers.packing as packing_module

    attention, pool, dropout = _layers(p=0.3)
    calls = []
    real_dropout = dropout_module.dropout

    def spy(x, p, training):
        calls.append((p, tuple(x.shape)))
        return real_dropout(x, p, training)

    monkeypatch.setattr(dropout_module, "dropout", spy)
    monkeypatch.setattr(packing_module, "dropout", spy)
    values = torch.randn(4, 6, 16, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(5)
    first = attend_and_pool(values, MASK, attention, pool, dropout, dropout)
    real = int(MASK.sum())
    assert calls == [(0.3, (real, 16)), (0.3, (4 * 4, 5, 5)), (0.3, (real, 16))]
    torch.manual_seed(5)
    assert torch.equal(first, attend_and_pool(values, MASK, attention, pool, dropout, dropout))
    first.pow(2).sum().backward()
    assert torch.equal(values.grad[~MASK], torch.zeros_like(values.grad[~MASK]))
    assert torch.isfinite(values.grad).all()


def test_nrms_encoders_score_what_the_padded_forms_score() -> None:
    """NRMS's news and user encoders through attend_and_pool give the padded composition's
    vectors with the model's own modules (eval, float64)."""
    from recsys.models import build_model
    from tests.support_models import SIZES, make_news, tiny_config

    torch.manual_seed(1)
    model = build_model("nrms", tiny_config(), SIZES).double().eval()
    generator = torch.Generator().manual_seed(2)
    news = make_news(torch.randint(1, 5, (12,), generator=generator), generator)
    tokens, mask = model.embedder.sequence(news)
    expected = _padded(tokens, mask, model.news_attention, model.news_pool, model.dropout, model.dropout)
    vectors = model.encode_news(news)
    assert torch.allclose(vectors, expected, atol=1e-12)
    history = vectors[torch.randint(0, 12, (3, 7), generator=generator)]
    history_mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    user = model.user_encoder
    assert torch.allclose(user(history, history_mask),
                          _padded(history, history_mask.bool(), user.attention, user.pool, user.dropout), atol=1e-12)


def test_packed_path_trains_under_bf16_autocast_close_to_float32() -> None:
    attention, pool, dropout = _layers()
    attention.float(), pool.float()
    values = torch.randn(4, 6, 16, requires_grad=True)
    expected = _padded(values, MASK, attention, pool, dropout)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attend_and_pool(values, MASK, attention, pool, dropout)
    out.float().sum().backward()
    assert torch.isfinite(values.grad).all()
    assert torch.allclose(out.float(), expected, atol=0.05)
