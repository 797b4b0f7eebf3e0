"""Shared layers of the recommender zoo: masking, formulas, the news token sequence (interest fusion: test_fusion.py)."""

from __future__ import annotations

import pytest
import torch

from recsys.inputs import NewsInputs
from recsys.layers import (
    AdditiveAttention,
    CNNTextEncoder,
    CrossNetwork,
    DINActivationUnit,
    InnerProductLayer,
    MultiHeadSelfAttention,
    NewsFeatureEmbedder,
    masked_mean,
    masked_softmax,
)


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


def test_masked_softmax_ignores_masked_and_zeroes_empty_rows() -> None:
    scores = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], requires_grad=True)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    weights = masked_softmax(scores, mask)
    expected = torch.cat([torch.softmax(torch.tensor([1.0, 2.0]), 0), torch.zeros(1)])
    assert torch.allclose(weights[0], expected)
    assert torch.equal(weights[1], torch.zeros(3))
    weights.sum().backward()
    assert torch.isfinite(scores.grad).all()


def test_masked_mean() -> None:
    values = torch.tensor([[[1.0], [3.0], [100.0]], [[5.0], [7.0], [9.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert masked_mean(values, mask).tolist() == [[2.0], [0.0]]


@pytest.mark.parametrize("layer", [AdditiveAttention(8), MultiHeadSelfAttention(8, 2), CNNTextEncoder(8, 8)])
def test_padding_content_never_reaches_real_positions(layer: torch.nn.Module) -> None:
    layer.eval()
    values = torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    noisy = values.clone()
    noisy[0, 3:] = torch.randn(2, 8) * 50
    out, out_noisy = layer(values, mask), layer(noisy, mask)
    if out.dim() == 3:  # per-position output: only the real positions must be unchanged
        out, out_noisy = out[0, :3], out_noisy[0, :3]
    else:
        out, out_noisy = out[0], out_noisy[0]
    assert torch.allclose(out, out_noisy, atol=1e-5)


def test_additive_attention_is_a_convex_combination() -> None:
    layer = AdditiveAttention(4)
    values = torch.randn(3, 6, 4)
    weights = layer.weights(values)
    assert torch.allclose(weights.sum(-1), torch.ones(3))
    assert torch.allclose(layer(values), torch.einsum("bl,bld->bd", weights, values))


def test_additive_attention_follows_the_tanh_formula() -> None:
    torch.manual_seed(0)
    layer = AdditiveAttention(6)
    values = (3 * torch.randn(4, 5, 6)).requires_grad_(True)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False], [False] * 5, [True, False, True, True, False]])
    want = masked_softmax(torch.tanh(layer.project(values)) @ layer.query, mask)  # a_i = softmax(q . tanh(W h_i + b))
    got = layer.weights(values, mask)
    assert torch.allclose(got, want, atol=1e-6), (got - want).abs().max()
    probe = torch.randn(4, 5)
    parameters = [values, *layer.parameters()]
    want_grads = torch.autograd.grad((want * probe).sum(), parameters)
    got_grads = torch.autograd.grad((got * probe).sum(), parameters)
    assert all(torch.allclose(g, w, atol=1e-5) for g, w in zip(got_grads, want_grads, strict=True))


def test_self_attention_on_empty_rows_is_finite() -> None:
    layer = MultiHeadSelfAttention(8, 2)
    out = layer(torch.randn(2, 4, 8), torch.zeros(2, 4, dtype=torch.bool))
    assert torch.isfinite(out).all()


def test_cross_network_matches_the_dcn_formula() -> None:
    layer = CrossNetwork(3, num_layers=2)
    x0 = torch.randn(4, 3)
    x = x0
    for w, b in zip(layer.weights, layer.biases, strict=True):
        x = x0 * (x @ w).unsqueeze(-1) + b + x
    assert torch.allclose(layer(x0), x)
    assert len(CrossNetwork(5).weights) == 3


def test_inner_product_layer_contains_field_inner_products() -> None:
    layer = InnerProductLayer(num_fields=3, dim=4, out_dim=5)
    fields = torch.randn(2, 3, 4)
    out = layer(fields)
    assert out.shape == (2, layer.out_dim) == (2, 5 + 5 + 3)
    pairs = out[:, -3:]
    expected = torch.stack([(fields[:, i] * fields[:, j]).sum(-1) for i, j in [(0, 1), (0, 2), (1, 2)]], dim=1)
    assert torch.allclose(pairs, expected, atol=1e-5)
    # quadratic signals: ||Σ_i θ_i f_i||² with the paper's rank-one decomposition
    theta = layer.theta[0]
    assert torch.allclose(out[:, 5], (theta[None, :, None] * fields).sum(1).pow(2).sum(-1), atol=1e-5)


def test_din_activation_is_an_unnormalised_masked_weighted_sum() -> None:
    unit = DINActivationUnit(4)
    history = torch.randn(2, 3, 4)
    candidate = torch.randn(2, 4)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    pooled = unit(history, candidate, mask)
    c = candidate.unsqueeze(1).expand_as(history)
    weights = unit.mlp(torch.cat([history, c, history - c, history * c], -1)).squeeze(-1) * mask
    assert torch.allclose(pooled, torch.einsum("bh,bhd->bd", weights, history), atol=1e-6)
    assert not torch.allclose(weights.sum(-1), torch.ones(2))  # no softmax, as in DIN
    doubled = unit(torch.cat([history, history], 1), candidate, torch.cat([mask, mask], 1))
    assert torch.allclose(doubled, 2 * pooled, atol=1e-5)  # intensity is kept



def _din_plain(unit: DINActivationUnit, history, candidate, mask):
    """DIN's activation unit as the paper writes it: the MLP over [h, c, h - c, h * c] of every slot."""
    c = candidate.unsqueeze(1).expand_as(history)
    weights = unit.mlp(torch.cat([history, c, history - c, history * c], -1)).squeeze(-1)
    if mask is not None:
        weights = weights * mask
    return torch.einsum("bh,bhd->bd", weights, history)


@pytest.mark.parametrize("masked", [True, False])
def test_din_activation_packed_equals_the_plain_mlp_in_value_and_gradient(masked: bool) -> None:
    torch.manual_seed(3)
    # float64: in float32 a pre-activation within rounding of PReLU's kink flips its derivative
    unit = DINActivationUnit(8).double()
    history = torch.randn(4, 6, 8, dtype=torch.float64, requires_grad=True)
    candidate = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    # a full history, a partial one, an empty one (pools to zero), one real item at the front
    mask = torch.tensor([[1] * 6, [0, 0, 0, 1, 1, 1], [0] * 6, [1, 0, 0, 0, 0, 0]], dtype=torch.bool) if masked else None
    packed = unit(history, candidate, mask)
    plain = _din_plain(unit, history, candidate, mask)
    assert torch.allclose(packed, plain, atol=1e-12)
    if masked:
        assert torch.equal(packed[2], torch.zeros(8, dtype=torch.float64))
    upstream = torch.randn_like(plain)
    grads_packed = torch.autograd.grad((packed * upstream).sum(), [history, candidate, *unit.parameters()])
    grads_plain = torch.autograd.grad((plain * upstream).sum(), [history, candidate, *unit.parameters()])
    for got, want in zip(grads_packed, grads_plain, strict=True):
        assert torch.allclose(got, want, atol=1e-12)


def test_din_activation_runs_under_bf16_autocast() -> None:
    unit = DINActivationUnit(8)
    history, candidate = torch.randn(2, 5, 8), torch.randn(2, 8)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = unit(history, candidate, mask)
    assert pooled.shape == (2, 8) and torch.isfinite(pooled).all()
    assert torch.allclose(pooled.float(), _din_plain(unit, history, candidate, mask), atol=0.1, rtol=0.05)

def _news(image_present: list[bool]) -> NewsInputs:
    count = len(image_present)
    title = torch.tensor([[101, 7, 8, 102, 0]] * count)
    return NewsInputs(
        title=title,
        title_mask=title != 0,
        category=torch.tensor([1, 0][:count]),
        subcategory=torch.tensor([2, 3][:count]),
        abstract=torch.tensor([[101, 9, 102]] * count),
        abstract_mask=torch.ones(count, 3, dtype=torch.bool),
        image=torch.randn(count, 512),
        image_present=torch.tensor(image_present),
    )


def test_news_sequence_order_and_masks() -> None:
    embedder = NewsFeatureEmbedder(("title", "abstract", "category", "subcategory", "image"), 8, 200, 3, 4)
    news = _news([True, False])
    tokens, mask = embedder.sequence(news)
    assert tokens.shape == (2, 5 + 3 + 3, 8)
    # title (4 real + pad), abstract, category (unknown id 0 is masked), subcategory, image
    assert mask[0].tolist() == [True] * 4 + [False] + [True] * 3 + [True, True, True]
    assert mask[1, 8].item() is False
    assert torch.allclose(tokens[0, 8], embedder.category.weight[1])
    assert torch.allclose(tokens[1, 10], embedder.image_default)  # no image: learned default
    assert torch.allclose(tokens[0, 10], embedder.image(news.image[0]))


def test_news_sequence_follows_the_configured_features() -> None:
    embedder = NewsFeatureEmbedder(("title", "category"), 8, 200, 3, 4)
    assert embedder.image is None and embedder.subcategory is None
    tokens, mask = embedder.sequence(_news([True, True]))
    assert tokens.shape == (2, 6, 8)
    only_title, _ = embedder.sequence(_news([True, True]), parts=("title",))
    assert only_title.shape == (2, 5, 8)


def test_news_sequence_reports_a_missing_tensor() -> None:
    embedder = NewsFeatureEmbedder(("title", "image"), 8, 200, 3, 4)
    news = _news([True])
    news.image = None
    with pytest.raises(ValueError, match="image"):
        embedder.sequence(news)


@pytest.mark.parametrize("features", [("title", "category"), ("title", "abstract", "category", "subcategory", "image"),
                                      ("category",), ("abstract", "image")])
@pytest.mark.parametrize("word_ids", [(), (7, 8, 9, 101, 102)])
def test_embedder_mean_equals_the_masked_mean_of_the_sequence(features, word_ids) -> None:
    """The ranking models' news encoder sums through embedding_bag; it must be the same average
    pooling as masked_mean over the token sequence, in value and in every gradient."""
    from recsys.layers import masked_mean

    torch.manual_seed(5)
    embedder = NewsFeatureEmbedder(features, 8, 200, 3, 4, word_ids).double()
    news = _news([True, False])
    news.image = news.image.double()
    news.title = torch.tensor([[101, 7, 8, 102, 0], [101, 0, 0, 0, 0]])  # a shorter title
    news.title_mask = news.title != 0
    news.category = torch.tensor([1, 0])  # the second news has no category: masked out
    upstream = torch.randn(2, 8, dtype=torch.float64)
    got = embedder.mean(news)
    want = masked_mean(*embedder.sequence(news))
    assert torch.allclose(got, want, atol=1e-12)
    params = [p for p in embedder.parameters() if p.requires_grad]
    grads_got = torch.autograd.grad((got * upstream).sum(), params, allow_unused=True)
    grads_want = torch.autograd.grad((want * upstream).sum(), params, allow_unused=True)
    for g, w in zip(grads_got, grads_want, strict=True):
        assert (g is None and w is None) or torch.allclose(g, w, atol=1e-12)


def test_embedder_mean_reports_a_missing_text() -> None:
    embedder = NewsFeatureEmbedder(("title", "category"), 8, 200, 3, 4)
    news = _news([True])
    news.title_mask = None
    with pytest.raises(ValueError, match="title"):
        embedder.mean(news)
