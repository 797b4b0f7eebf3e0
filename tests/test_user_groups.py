"""User groups (GENRE §3.4, Table 6): empty (no history), new (1..5 items), warm (6+).

The boundaries 0, 1, 5, 6 are pinned wherever a group is decided: recsys.catalog.user_group,
SplitArrays masks, group_metrics, and the users the cold-user generation tasks select.
"""

from __future__ import annotations

import numpy as np
import pytest

from genre_local.store.datasets import UserHistory
from recsys.catalog import NEW_USER_MAX_HISTORY, USER_GROUPS, user_group
from recsys.data import SplitArrays
from recsys.evaluate import SplitScores, group_metrics

BOUNDARIES = {0: "empty", 1: "new", NEW_USER_MAX_HISTORY: "new", NEW_USER_MAX_HISTORY + 1: "warm"}


def test_group_of_a_history_length_at_the_boundaries() -> None:
    assert NEW_USER_MAX_HISTORY == 5  # the paper's "new users": 1..5 history items
    for length, group in BOUNDARIES.items():
        assert user_group(length) == group
    assert user_group(200) == "warm"
    with pytest.raises(ValueError, match="negative"):
        user_group(-1)
    assert USER_GROUPS == ("all", "empty", "new", "warm")


def _split(lengths: list[int]) -> SplitArrays:
    """One impression per history length: two candidates, the first clicked."""
    m = len(lengths)
    history = np.concatenate([np.arange(1, n + 1, dtype=np.int32) for n in lengths]) if sum(lengths) else np.zeros(0, np.int32)
    return SplitArrays(
        impression_id=np.arange(m, dtype=np.int64), user_index=np.arange(m, dtype=np.int64),
        profile_index=np.zeros(m, np.int64), history=history,
        history_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        original_history_len=np.asarray(lengths, np.int64),
        candidates=np.tile(np.array([1, 2], np.int32), m), candidate_offsets=np.arange(0, 2 * m + 1, 2, dtype=np.int64),
        labels=np.tile(np.array([1, 0], np.int8), m),
    )


def test_split_masks_follow_the_boundaries_and_partition_all() -> None:
    lengths = list(BOUNDARIES)
    split = _split(lengths)
    masks = split.group_masks()
    assert set(masks) == set(USER_GROUPS)
    for i, length in enumerate(lengths):
        assert [g for g in ("empty", "new", "warm") if masks[g][i]] == [BOUNDARIES[length]]
    assert masks["all"].all()
    assert split.is_new_user().tolist() == [False, True, True, False]  # an empty history is not new


def test_group_metrics_score_each_group_on_its_own_impressions() -> None:
    split = _split([0, 0, 1, 5, 6])
    # Right for the empty-history users, wrong for the new ones, right for the warm one.
    scores = [np.array([1.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.0, 1.0]),
              np.array([1.0, 0.0])]
    result = group_metrics(split, SplitScores(np.arange(5), scores, 1.0))
    assert {g: result[g]["impressions"] for g in USER_GROUPS} == {"all": 5, "empty": 2, "new": 2, "warm": 1}
    assert (result["empty"]["auc"], result["new"]["auc"], result["warm"]["auc"]) == (1.0, 0.0, 1.0)
    assert result["all"]["auc"] == pytest.approx(3 / 5)


def test_empty_group_only_where_a_scored_user_has_no_history() -> None:
    split = _split([0, 2, 7])
    everyone = group_metrics(split, SplitScores(np.arange(3), [np.array([1.0, 0.0])] * 3, 1.0))
    assert set(everyone) == {"all", "empty", "new", "warm"}
    with_history = group_metrics(split, SplitScores(np.array([1, 2]), [np.array([1.0, 0.0])] * 2, 1.0))
    assert set(with_history) == {"all", "new", "warm"}  # the paper's groups, as before
    only_warm = group_metrics(split, SplitScores(np.array([2]), [np.array([1.0, 0.0])], 1.0))
    assert only_warm["new"]["impressions"] == 0 and np.isnan(only_warm["new"]["auc"])


def test_cold_users_the_generation_tasks_select_are_1_to_5() -> None:
    # news/chain generation (cold_users_only) selects UserHistory.cold: never an empty history.
    for length, group in BOUNDARIES.items():
        assert UserHistory("U", tuple(f"N{i}" for i in range(length))).cold == (group == "new")


def test_cohorts_are_extra_groups_of_their_impression_ids() -> None:
    split = _split([0, 1, 5, 6])
    scores = [np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 0.0]), np.array([1.0, 0.0])]
    result = group_metrics(split, SplitScores(np.arange(4), scores, 1.0),
                           {"chain-cohort:a/x": np.array([1, 2, 99]), "chain-cohort:b/x": np.array([], np.int64)})
    assert result["chain-cohort:a/x"]["impressions"] == 2 and result["chain-cohort:a/x"]["auc"] == 0.5
    assert result["chain-cohort:b/x"]["impressions"] == 0 and np.isnan(result["chain-cohort:b/x"]["auc"])
    assert result["all"]["impressions"] == 4  # cohorts change no other group
