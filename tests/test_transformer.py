"""BST's packed transformer encoder: the same function as nn.TransformerEncoder on the real slots."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recsys.layers.transformer import PackedTransformerEncoder


def _pair(norm_first: bool, dropout: float = 0.0) -> tuple[nn.TransformerEncoder, PackedTransformerEncoder]:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=dropout, activation=F.leaky_relu,
                                       batch_first=True, norm_first=norm_first)
    plain = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).double()
    packed = PackedTransformerEncoder(layer, 2, enable_nested_tensor=False).double()
    packed.load_state_dict(plain.state_dict())
    return plain, packed


# rows left-padded (BST's layout), with holes, right-padded and full; column 0 is padding in every
# row, so the attention window is cut
PADDING = torch.tensor([
    [True, True, True, False, False, False, False],
    [True, False, True, False, True, False, False],
    [True, False, False, False, True, True, True],
    [True, False, False, False, False, False, False],
])


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_real_slots_and_gradients_equal_torchs_encoder(norm_first: bool, training: bool) -> None:
    plain, packed = _pair(norm_first)  # dropout 0: training mode is deterministic too
    plain.train(training), packed.train(training)
    x = torch.randn(4, 7, 16, dtype=torch.float64)
    x_plain, x_packed = x.clone().requires_grad_(), x.clone().requires_grad_()
    real = ~PADDING
    expected = plain(x_plain, src_key_padding_mask=PADDING) * real[..., None]
    out = packed(x_packed, src_key_padding_mask=PADDING)
    assert torch.allclose(out, expected, atol=1e-12)
    assert torch.equal(out[PADDING], torch.zeros_like(out[PADDING]))  # padding slots come back as zeros
    weights = torch.randn_like(out)
    (expected * weights).sum().backward()
    (out * weights).sum().backward()
    assert torch.allclose(x_packed.grad, x_plain.grad, atol=1e-12)
    for a, b in zip(plain.parameters(), packed.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-11)


def test_same_parameters_keys_and_seeded_initialisation_as_torchs() -> None:
    torch.manual_seed(3)
    plain = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), 2, enable_nested_tensor=False)
    torch.manual_seed(3)
    packed = PackedTransformerEncoder(nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), 2,
                                      enable_nested_tensor=False)
    assert plain.state_dict().keys() == packed.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), packed.state_dict().values()))


def test_training_with_dropout_leaves_padding_out_of_everything() -> None:
    """With dropout on, the padding slots still get zero output and zero gradient; masks differ
    between steps and repeat under the same seed; nothing is NaN (a padding query row never
    sees -inf)."""
    _, packed = _pair(norm_first=False, dropout=0.3)
    packed.train()
    x = torch.randn(4, 7, 16, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(9)
    first = packed(x, src_key_padding_mask=PADDING)
    torch.manual_seed(9)
    again = packed(x, src_key_padding_mask=PADDING)
    other = packed(x, src_key_padding_mask=PADDING)
    assert torch.equal(first, again) and not torch.equal(first, other)
    first.pow(2).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.equal(x.grad[PADDING], torch.zeros_like(x.grad[PADDING]))
    assert (x.grad[~PADDING].abs().sum(-1) > 0).all()
    assert torch.equal(first[PADDING], torch.zeros_like(first[PADDING]))


@pytest.mark.parametrize("autocast", [False, True])
def test_a_row_without_a_real_slot_is_zeros_and_no_nan_reaches_a_gradient(autocast: bool) -> None:
    """A row whose every slot is padding (beside a row with real slots) has all its attention keys
    masked: its outputs are zeros, and nothing in the input or parameter gradients is NaN, in
    float32 and under bfloat16 autocast."""
    _, packed = _pair(norm_first=False)
    packed.float().train()
    padding = torch.tensor([[True] * 5, [True, False, False, True, True]])
    x = torch.randn(2, 5, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = packed(x, src_key_padding_mask=padding)
    assert torch.equal(out[0], torch.zeros_like(out[0])) and torch.isfinite(out).all()
    out.float().pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.equal(x.grad[0], torch.zeros_like(x.grad[0]))
    assert all(torch.isfinite(p.grad).all() for p in packed.parameters())


def test_without_a_padding_mask_or_a_real_slot_it_is_torchs_encoder() -> None:
    plain, packed = _pair(norm_first=False)
    plain.eval(), packed.eval()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    assert torch.equal(packed(x), plain(x))
    everything = torch.ones(2, 5, dtype=torch.bool)
    assert torch.equal(packed(x, src_key_padding_mask=everything).isnan(),
                       plain(x, src_key_padding_mask=everything).isnan())
    causal = nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
    assert torch.equal(packed(x, mask=causal), plain(x, mask=causal))


def test_every_dropout_site_draws_its_own_rate_on_the_packed_shapes(monkeypatch) -> None:
    """The four dropouts of a layer (attention weights, after attention, inside and after the
    feed-forward block) each run, on the packed or windowed shapes, with their own p."""
    import recsys.layers.packing as packing_module
    import recsys.layers.transformer as packed_module

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.1, batch_first=True)
    layer.dropout1.p, layer.dropout.p, layer.dropout2.p, layer.self_attn.dropout = 0.2, 0.3, 0.4, 0.5
    packed = PackedTransformerEncoder(layer, 1, enable_nested_tensor=False)
    calls = []
    real_dropout = packed_module.dropout
    for module in (packed_module, packing_module):  # the attention weights' dropout lives in packing
        monkeypatch.setattr(module, "dropout",
                            lambda x, p, training: calls.append((p, tuple(x.shape), training)) or real_dropout(x, p, training))
    packed.train()
    packed(torch.randn(4, 7, 16), src_key_padding_mask=PADDING)
    real = int((~PADDING).sum())
    assert calls == [(0.5, (16, 6, 6), True), (0.2, (real, 16), True), (0.3, (real, 32), True), (0.4, (real, 16), True)]


def test_bst_scores_what_torchs_encoder_scores() -> None:
    """BST with the packed encoder gives torch's encoder's logits (same weights, eval), so the
    packing changed the speed and nothing else."""
    from recsys.models import build_model
    from tests.support_models import SIZES, make_news, make_users, tiny_config
    from tests.support_models import forward as model_forward

    torch.manual_seed(1)
    model = build_model("bst", tiny_config(transformer_layers=2), SIZES).double().eval()
    assert type(model.transformer) is PackedTransformerEncoder
    generator = torch.Generator().manual_seed(2)
    news = make_news(torch.randint(1, 5, (30,), generator=generator), generator)
    user = make_users(5, generator)
    history = torch.randint(1, 30, (5, 6), generator=generator)
    candidates = torch.randint(1, 30, (5, 3), generator=generator)
    packed_logits = model_forward(model, news, history, user, candidates)
    plain = nn.TransformerEncoder(model.transformer.layers[0], 2, enable_nested_tensor=False)
    plain.load_state_dict(model.transformer.state_dict())
    model.transformer = plain.double().eval()
    assert torch.allclose(packed_logits, model_forward(model, news, history, user, candidates), atol=1e-10)


def test_packed_encoder_trains_under_bf16_autocast() -> None:
    """Under CPU bf16 autocast (`[train] bf16 = "on"`) the packed path keeps its dtypes straight
    and stays close to torch's encoder under the same autocast."""
    plain, packed = _pair(norm_first=False, dropout=0.2)
    plain.float().eval(), packed.float().train()
    x = torch.randn(4, 7, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = packed(x, src_key_padding_mask=PADDING)
    out.float().sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in packed.parameters())
    packed.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = plain(x, src_key_padding_mask=PADDING)[~PADDING].float()
        assert torch.allclose(packed(x, src_key_padding_mask=PADDING)[~PADDING].float(), expected, atol=0.03)
