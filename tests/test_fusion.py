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


# -- behaviour: profiles that carry no signal must not hurt; true ones must help ---------------------

BEHAVIOUR_TRAIN = """
[train]
embed_dim = 32
num_heads = 2
transformer_layers = 1
history_len = 20
title_len = 16
batch_size = 32
lr = 0.005
epochs = 2
seeds = 3
threads = 1
"""
# The default optimizer: Adam with L2 decay 0.01 on the weight matrices (recsys/optim.py). With the
# decay on every parameter (decay_scope "all", the default before issue 9 part 5) true profiles
# did not help here: NRMS original 0.5655, up-random 0.5635, up-truth 0.5634 (seeds 1-3, test
# split; the gate stayed at about 1e-4); BENCHMARKS §9 has the table.


@pytest.fixture(scope="module")
def synthetic_profiles(tmp_path_factory):
    """One synthetic MIND set imported twice: `truth` with each user's true topics and home state as
    profile generations, `rand` with seeded random topics (as many as the truth) and a random state."""
    import random

    from typer.testing import CliRunner

    from genre_local.cli import app
    from genre_local.data.taxonomy import PROFILE_TOPICS, US_STATES
    from genre_local.store import open_store
    from tests.support_train import add_generation

    folder = tmp_path_factory.mktemp("fusion")
    db, config = folder / "s.duckdb", folder / "genre.toml"
    config.write_text(BEHAVIOUR_TRAIN)
    runner = CliRunner()

    def cli(*args: str):
        result = runner.invoke(app, ["--db", str(db), "--config", str(config), *args])
        assert result.exit_code == 0, result.output
        return result

    cli("data", "synth", str(folder / "synth"), "--news", "600", "--users", "300", "--seed", "7")
    for name in ("rand", "truth"):
        cli("data", "import", str(folder / "synth"), "--name", name)
    rng = random.Random(11)
    with open_store(db) as store:
        truth = store.conn.execute(
            "SELECT user_id, topics, region FROM user_truth WHERE dataset = 'truth' ORDER BY user_id").fetchall()
        assert len(truth) == 300
        for user_id, topics, region in truth:
            add_generation(store, "truth", "profile", user_id, {"topics": list(topics), "regions": [region]})
            add_generation(store, "rand", "profile", user_id,
                           {"topics": rng.sample(PROFILE_TOPICS, len(topics)), "regions": [rng.choice(US_STATES)]})
    return cli, db


def _seed_aucs(cli, db, model: str, dataset: str, variant: str) -> list[float]:
    import json

    from genre_local.store import open_store

    result = cli("train", "--model", model, "--dataset", dataset, "--variant", variant, "--json")
    assert json.loads(result.stdout.strip().splitlines()[-1])["eval_split"] == "test"
    with open_store(db) as store:
        rows = store.conn.execute(
            "SELECT seed, value FROM run_results WHERE model = ? AND dataset = ? AND variant = ? "
            "AND user_group = 'all' AND metric = 'auc' ORDER BY seed", [model, dataset, variant]).fetchall()
    assert [s for s, _ in rows] == [1, 2, 3]
    return [v for _, v in rows]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["nrms", "din"])
def test_random_profiles_stay_within_noise_and_true_profiles_help(synthetic_profiles, model: str) -> None:
    """The demo's NRMS fell from AUC 0.583 (original) to 0.502 (up) with near-chance profiles.

    Noise band: 2 standard errors of the difference of two 3-seed means,
    2 * sqrt(s_original^2 / 3 + s_random^2 / 3) (about a 95% band when the profile changes
    nothing), with a floor of 0.02 because a 3-seed standard deviation can come out tiny by chance.

    Measured (2 shared cores, default optimizer: Adam + L2 0.01 on the weight matrices): NRMS
    original 0.5794, up-random 0.5807, up-truth 0.5955, band 0.0399; the gain is one seed's
    (per seed -0.017, -0.001, +0.067). AdamW on every parameter (the pin before issue 9 part 5):
    0.5873 / 0.5809 / 0.6100. Before the fusion drew its weights from its own random stream, `up`
    also re-initialised every other layer, and NRMS up-random scored 0.6078 (outside the band).

    DIN does not gain from the true profiles on this small set (default optimizer: original
    0.5856, up-random 0.5735, up-truth 0.5856, band 0.0254; under AdamW earlier 0.5970 / 0.5943 /
    0.5859), so for DIN the test pins only that neither profile hurts beyond the noise band; the
    gain is asserted where it is measured, for NRMS."""
    import statistics

    from tests.support_train import one_thread

    cli, db = synthetic_profiles
    with one_thread():
        original = _seed_aucs(cli, db, model, "rand", "original")
        random_up = _seed_aucs(cli, db, model, "rand", "up")
        truth_up = _seed_aucs(cli, db, model, "truth", "up")
    mean = statistics.fmean
    band = max(0.02, 2 * (statistics.variance(original) / 3 + statistics.variance(random_up) / 3) ** 0.5)
    measured = (f"{model}: original {mean(original):.4f} {original}, up-random {mean(random_up):.4f} {random_up}, "
                f"up-truth {mean(truth_up):.4f} {truth_up}, band {band:.4f}")
    print(measured)
    assert abs(mean(random_up) - mean(original)) <= band, measured
    if model == "nrms":
        assert mean(truth_up) > mean(original), measured
    else:
        assert mean(truth_up) > mean(original) - band, measured


def test_building_the_fusion_leaves_the_other_layers_initialisation_alone() -> None:
    """Same seed: `up`'s model equals `original`'s except for the fusion, and (gate closed) scores alike."""
    from recsys.models import build_model
    from tests.support_models import SIZES, tiny_config

    for name in ("nrms", "din"):
        torch.manual_seed(5)
        plain = build_model(name, tiny_config(use_profile=False), SIZES)
        torch.manual_seed(5)
        fused = build_model(name, tiny_config(use_profile=True), SIZES)
        fused_weights = fused.state_dict()
        for key, value in plain.state_dict().items():
            assert torch.equal(value, fused_weights[key]), (name, key)
        assert all(key in plain.state_dict() or key.startswith("fusion.") for key in fused_weights)
        # the fusion's own weights still follow the seed
        torch.manual_seed(5)
        again = build_model(name, tiny_config(use_profile=True), SIZES)
        assert torch.equal(again.fusion.mlp[0].weight, fused.fusion.mlp[0].weight)
        torch.manual_seed(6)
        other = build_model(name, tiny_config(use_profile=True), SIZES)
        assert not torch.equal(other.fusion.mlp[0].weight, fused.fusion.mlp[0].weight)
