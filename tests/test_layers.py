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
