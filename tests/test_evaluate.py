"""Evaluation: the fast path (cached news/user vectors) equals the naive path; user groups."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from genre_local.store import open_store
from genre_local.store.variants import fetch_encoded
from recsys import evaluate
from recsys.data import last_items
from recsys.evaluate import SplitScores, group_metrics, score_split
from recsys.metrics import impression_metrics
from recsys.catalog import RANKING_MODELS
from tests.support_models import LLM_FREE_MODELS
from recsys.models import ModelConfig, build_model
from recsys.train import feature_sizes
from recsys.variants import parse_variant
from tests.support_train import add_all_generations, make_store, one_thread


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    db = make_store(folder / "s.duckdb", users=12, news_per_cat=8)
    add_all_generations(db, users=12)
    with open_store(db) as store:
        encoded, _ = fetch_encoded(store.conn, "tiny", parse_variant("ns+up+ng", 2),
                                   ("title", "abstract", "category", "subcategory"), 12, 8, None, folder / "cache")
    return encoded


@pytest.mark.parametrize("name", LLM_FREE_MODELS)
def test_fast_scores_equal_naive_scores(data, name: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig(embed_dim=16, num_heads=2, transformer_layers=1, history_len=6, title_len=12,
                         abstract_len=8, features=("title", "abstract", "category", "subcategory"), use_profile=True)
    model = build_model(name, config, feature_sizes(data))
    model.train()  # score_split must switch to eval (no dropout) and back
    split = data.split("dev")
    fast = score_split(model, data, split, history_len=6, batch_size=7, fast=True)
    naive = score_split(model, data, split, history_len=6, batch_size=5, fast=False)
    assert model.training
    assert np.array_equal(fast.rows, np.arange(len(split)))
    assert len(fast.scores) == len(split)
    for row, (a, b) in enumerate(zip(fast.scores, naive.scores, strict=True)):
        assert a.shape == b.shape == split.impression_labels(row).shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert np.concatenate(fast.scores).std() > 0  # not trivially constant


def test_score_subset_of_rows(data) -> None:
    model = build_model("din", ModelConfig(embed_dim=16, num_heads=2, history_len=6, title_len=12,
                                           use_profile=True), feature_sizes(data))
    split = data.split("dev")
    every = score_split(model, data, split, 6, 16)
    some = score_split(model, data, split, 6, 16, rows=np.array([3, 7]))
    np.testing.assert_allclose(some.scores[1], every.scores[7], rtol=1e-6, atol=1e-6)


def test_group_metrics_split_new_and_warm_users(data) -> None:
    split = data.split("test")
    rows = np.arange(len(split))
    rng = np.random.default_rng(0)
    scores = [rng.normal(size=len(split.impression_labels(r))) for r in rows]
    result = group_metrics(split, SplitScores(rows, scores, 1.0))
    new = (split.original_history_len >= 1) & (split.original_history_len <= 5)
    empty = split.original_history_len == 0
    assert new.any() and (~new).any() and not empty.any()
    assert "empty" not in result  # every user here has a history (tests/test_user_groups.py has empty ones)
    for group, keep in (("all", np.ones(len(rows), bool)), ("new", new), ("warm", ~new)):
        idx = np.flatnonzero(keep)
        expected = impression_metrics([split.impression_labels(r) for r in idx], [scores[i] for i in idx])
        assert result[group]["auc"] == pytest.approx(expected["auc"])
        assert result[group]["ndcg@10"] == pytest.approx(expected["ndcg@10"])
        assert result[group]["impressions"] == expected["impressions"]
    assert result["new"]["impressions"] + result["warm"]["impressions"] == result["all"]["impressions"]


def test_group_uses_history_before_synthetic_news(data) -> None:
    split = data.split("train")
    lengths = np.diff(split.history_offsets)
    grown = lengths > split.original_history_len
    assert grown.any()  # ng made some cold histories longer...
    assert split.is_new_user()[grown].all()  # ...but they still count as new users


@pytest.mark.parametrize("name", ["nrms", "lstur", "din"])
def test_fast_metrics_equal_the_reference_on_naive_scores(data, name: str, monkeypatch) -> None:
    """The whole fast evaluation (user vectors in blocks, vectorised metrics per group) against the
    reference: the naive path's scores through the per-impression metric loop. Blocks of 3 users
    make the block path run many times on this small split."""
    monkeypatch.setattr(evaluate, "_USER_BLOCK", 3)
    torch.manual_seed(1)
    config = ModelConfig(embed_dim=16, num_heads=2, transformer_layers=1, history_len=6, title_len=12,
                         abstract_len=8, features=("title", "abstract", "category", "subcategory"), use_profile=True)
    model = build_model(name, config, feature_sizes(data))
    split = data.split("dev")
    fast = group_metrics(split, score_split(model, data, split, history_len=6, batch_size=4, fast=True))
    naive = score_split(model, data, split, history_len=6, batch_size=5, fast=False)
    masks = split.group_masks()
    for group in ("all", "new", "warm"):
        idx = np.flatnonzero(masks[group])
        expected = impression_metrics([split.impression_labels(r) for r in idx], [naive.scores[r] for r in idx])
        assert fast[group]["impressions"] == expected["impressions"] > 0
        for metric in ("auc", "mrr", "ndcg@5", "ndcg@10"):
            assert fast[group][metric] == pytest.approx(expected[metric], abs=1e-9), (group, metric)


def test_users_with_the_same_input_share_one_vector(data) -> None:
    split = data.split("dev")
    rows = np.concatenate([np.arange(len(split)), [0, 1]])  # rows 0 and 1 twice
    firsts, group = evaluate._user_groups(split, rows, history_len=6)
    assert group[-2] == group[0] and group[-1] == group[1]
    assert np.array_equal(rows[np.unique(group, return_index=True)[1]], firsts)
    # each group's rows have equal inputs: user, profile and the last 6 history items
    history, _ = last_items(split.history, split.history_offsets, rows, 6)
    for g in range(len(firsts)):
        members = rows[group == g]
        assert len(np.unique(split.user_index[members])) == 1 and len(np.unique(split.profile_index[members])) == 1
        assert (history[group == g] == history[group == g][0]).all()


@pytest.mark.parametrize("name", RANKING_MODELS)
def test_ranking_fast_path_shares_each_impression_s_user_and_scores_as_pair_by_pair(data, name: str) -> None:
    """Each impression's history and user inputs gathered once per block of pairs (DCN and PNN: its
    mean history computed once), against the path before, which gathered them for every pair:
    exactly the same scores. Small batches put impressions across block boundaries."""
    torch.manual_seed(0)
    config = ModelConfig(embed_dim=16, num_heads=2, transformer_layers=1, history_len=6, title_len=12,
                         abstract_len=8, features=("title", "abstract", "category", "subcategory"), use_profile=True)
    model = build_model(name, config, feature_sizes(data)).eval()
    with torch.no_grad():
        model.fusion.gate.fill_(0.5)  # an open gate: the profile reaches the scores
    split = data.split("dev")
    rows = np.arange(len(split))
    for batch_size in (1, 3, 64):
        with torch.no_grad():
            shared = evaluate._ranking_fast(model, data, split, rows, 6, batch_size, "cpu")
            pairwise = evaluate._ranking_fast(model, data, split, rows, 6, batch_size, "cpu", share_users=False)
        assert len(shared) == len(pairwise) == len(split)
        for a, b in zip(shared, pairwise, strict=True):
            assert np.array_equal(a, b), (batch_size, a, b)
    assert np.concatenate(shared).std() > 0
    impressions = int((np.diff(split.candidate_offsets) > 1).sum())
    assert impressions > 3  # impressions with several candidates: there is a user to share
