"""Interest fusion (recsys/layers/fusion.py): the paper's interest vector, the gated form that starts
as the identity on v_u, the paper form kept as an option, and (slow) the behaviour that motivated the
gate: uninformative profiles must not destroy what a model learns from history."""

from __future__ import annotations

import pytest
import torch

from recsys.errors import ConfigError
from recsys.inputs import UserInputs
from recsys.layers.fusion import FUSION_FORMS, InterestFusion
from recsys.models import ModelConfig


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


def _profile_user(has_profile: list[bool]) -> UserInputs:
    batch = len(has_profile)
    return UserInputs(
        history_mask=torch.ones(batch, 2, dtype=torch.bool),
        user_index=torch.arange(batch),
        topics=torch.tensor([[1, 2, 0]] * batch),
        topics_mask=torch.tensor([[True, True, False]] * batch),
        regions=torch.tensor([[3]] * batch),
        regions_mask=torch.ones(batch, 1, dtype=torch.bool),
        has_profile=torch.tensor(has_profile),
    )


def test_interest_vector_is_masked_mean_of_topics_and_regions() -> None:
    for form in FUSION_FORMS:
        fusion = InterestFusion(num_topics=4, num_regions=5, dim=6, form=form)
        user = _profile_user([True, False])
        interest = fusion.interest(user)
        topics = fusion.topics.weight[[1, 2]].mean(0)
        regions = fusion.regions.weight[3]
        assert torch.allclose(interest[0], torch.cat([topics, regions]))
        assert torch.allclose(interest[1], fusion.empty)
        assert fusion(torch.randn(2, 6), user).shape == (2, 6)


def test_interest_fusion_infers_profile_presence_from_masks() -> None:
    fusion = InterestFusion(num_topics=4, num_regions=5, dim=6)
    user = _profile_user([True, True])
    user.has_profile = None
    user.topics_mask[1] = False
    user.regions_mask[1] = False
    interest = fusion.interest(user)
    assert torch.allclose(interest[1], fusion.empty)
    assert not torch.allclose(interest[0], fusion.empty)


def test_interest_fusion_needs_profile_fields() -> None:
    fusion = InterestFusion(4, 5, 6)
    with pytest.raises(ValueError, match="use_profile"):
        fusion(torch.randn(1, 6), UserInputs(history_mask=torch.ones(1, 2, dtype=torch.bool), user_index=torch.zeros(1, dtype=torch.long)))


def test_gated_fusion_is_the_default_and_returns_v_u_exactly_at_initialisation() -> None:
    assert ModelConfig().interest_fusion == "gated"
    fusion = InterestFusion(num_topics=4, num_regions=5, dim=6)
    assert fusion.form == "gated"
    user_vector = torch.randn(3, 6) * 10
    fused = fusion(user_vector, _profile_user([True, False, True]))
    assert torch.equal(fused, user_vector)  # bit for bit, with and without a profile


def test_gradients_reach_the_gate_and_then_the_profile_path() -> None:
    fusion = InterestFusion(num_topics=4, num_regions=5, dim=6)
    user = _profile_user([True, False])
    user_vector = torch.randn(2, 6, requires_grad=True)
    fusion(user_vector, user).square().sum().backward()
    assert fusion.gate.grad is not None and fusion.gate.grad.abs().sum() > 0
    # v_u passes through untouched: d(sum v^2)/dv = 2v
    assert torch.allclose(user_vector.grad, 2 * user_vector.detach())
    # closed gate: nothing behind it moves yet (but every parameter takes part, as DDP requires)
    assert all(p.grad is not None for p in fusion.parameters())
    assert fusion.mlp[0].weight.grad.abs().sum() == 0 and fusion.topics.weight.grad.abs().sum() == 0

    optimizer = torch.optim.AdamW(fusion.parameters(), lr=0.01)
    optimizer.step()
    optimizer.zero_grad()
    assert fusion.gate.abs().min() > 0  # one step opens every gate dimension
    fused = fusion(user_vector, user)
    assert not torch.allclose(fused, user_vector)
    fused.square().sum().backward()
    assert fusion.mlp[0].weight.grad.abs().sum() > 0
    assert fusion.topics.weight.grad[[1, 2]].abs().sum() > 0 and fusion.regions.weight.grad[3].abs().sum() > 0
    assert fusion.empty.grad.abs().sum() > 0  # user 1 has no profile


def test_paper_form_is_eq_2_an_mlp_that_replaces_v_u() -> None:
    fusion = InterestFusion(num_topics=4, num_regions=5, dim=6, form="paper")
    assert fusion.gate is None and "gate" not in dict(fusion.named_parameters())
    user = _profile_user([True, False])
    user_vector = torch.randn(2, 6)
    expected = fusion.mlp(torch.cat([user_vector, fusion.interest(user)], dim=-1))
    assert torch.equal(fusion(user_vector, user), expected)
    assert not torch.allclose(expected, user_vector)


def test_unknown_fusion_form_is_refused() -> None:
    with pytest.raises(ValueError, match="'sum' is unknown; use one of gated, paper"):
        InterestFusion(4, 5, 6, form="sum")
    with pytest.raises(ConfigError, match="interest_fusion 'sum' is unknown"):
        ModelConfig(interest_fusion="sum")
    assert ModelConfig(interest_fusion="paper", use_profile=True).interest_fusion == "paper"
