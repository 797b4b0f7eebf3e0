"""MIND metrics against values computed by hand (issue 4 §5)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.metrics import auc_score, impression_metrics, mean_metrics, metrics_by_impression, mrr_score, ndcg_score


def arr(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def test_auc_counts_ties_as_half() -> None:
    # positive 0.5 vs negatives 0.5 (tie: 1/2), 0.2 (win), 0.1 (win) -> 2.5 / 3
    assert auc_score(arr(0, 1, 0, 0), arr(0.5, 0.5, 0.2, 0.1)) == pytest.approx(2.5 / 3)
    # two positives, one negative: 0.1 < 0.3 loses, 0.7 > 0.3 wins
    assert auc_score(arr(1, 1, 0), arr(0.1, 0.7, 0.3)) == pytest.approx(0.5)
    assert auc_score(arr(1, 0, 0), arr(1.0, 1.0, 1.0)) == pytest.approx(0.5)


def test_auc_undefined_without_both_classes() -> None:
    assert math.isnan(auc_score(arr(1, 1), arr(0.2, 0.4)))
    assert math.isnan(auc_score(arr(0, 0), arr(0.2, 0.4)))


def test_ties_are_broken_by_candidate_order() -> None:
    assert mrr_score(arr(0, 1), arr(0.5, 0.5)) == pytest.approx(0.5)
    assert mrr_score(arr(1, 0), arr(0.5, 0.5)) == pytest.approx(1.0)
    assert ndcg_score(arr(0, 1), arr(0.5, 0.5), 5) == pytest.approx(1 / math.log2(3))


def test_mrr_divides_by_number_of_clicks() -> None:
    # ranked labels [1, 0, 1] -> (1/1 + 1/3) / 2
    assert mrr_score(arr(1, 1, 0), arr(0.1, 0.7, 0.3)) == pytest.approx(2 / 3)


def test_ndcg_uses_exponential_gain_and_log_discount() -> None:
    # ranked [1, 0, 1]: DCG = 1 + 1/log2(4); ideal [1, 1, 0]: 1 + 1/log2(3)
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_score(arr(1, 1, 0), arr(0.1, 0.7, 0.3), 5) == pytest.approx(expected)
    # graded label 2 has gain 3
    assert ndcg_score(arr(2, 1), arr(0.1, 0.9), 5) == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)))


def test_ndcg_cutoff() -> None:
    labels = arr(0, 0, 0, 0, 0, 1, 0)
    scores = arr(7, 6, 5, 4, 3, 2, 1)  # the click is ranked 6th
    assert ndcg_score(labels, scores, 5) == 0.0
    assert ndcg_score(labels, scores, 10) == pytest.approx(1 / math.log2(7))


def test_impression_metrics_skips_no_click_and_keeps_all_clicked_out_of_auc() -> None:
    labels = [arr(0, 1, 0, 0), arr(1, 1, 0), arr(1, 1), arr(0, 0, 0)]
    scores = [arr(0.5, 0.5, 0.2, 0.1), arr(0.1, 0.7, 0.3), arr(0.2, 0.4), arr(0.3, 0.2, 0.1)]
    result = impression_metrics(labels, scores)
    ndcg_b = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert result["auc"] == pytest.approx((2.5 / 3 + 0.5) / 2)
    assert result["mrr"] == pytest.approx((0.5 + 2 / 3 + 0.75) / 3)
    assert result["ndcg@5"] == pytest.approx((1 / math.log2(3) + ndcg_b + 1.0) / 3)
    assert result["ndcg@10"] == pytest.approx(result["ndcg@5"])
    assert result["impressions"] == 3
    assert result["auc_impressions"] == 2


def test_impression_metrics_with_nothing_usable() -> None:
    result = impression_metrics([arr(0, 0)], [arr(0.1, 0.2)])
    assert result["impressions"] == 0
    assert all(math.isnan(result[key]) for key in ("auc", "mrr", "ndcg@5", "ndcg@10"))


def test_impression_metrics_rejects_misaligned_input() -> None:
    with pytest.raises(ValueError, match="impression 0"):
        impression_metrics([arr(0, 1)], [arr(0.1, 0.2, 0.3)])
    with pytest.raises(ValueError, match="2 label arrays"):
        impression_metrics([arr(0, 1), arr(1, 0)], [arr(0.1, 0.2)])


def test_perfect_and_reversed_rankings() -> None:
    labels = [arr(1, 0, 0, 0, 0)]
    best = impression_metrics(labels, [arr(5, 4, 3, 2, 1)])
    worst = impression_metrics(labels, [arr(1, 2, 3, 4, 5)])
    assert best["auc"] == best["mrr"] == best["ndcg@10"] == pytest.approx(1.0)
    assert worst["auc"] == 0.0
    assert worst["mrr"] == pytest.approx(0.2)


def _random_impressions(seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Impressions of 1..40 candidates: some without a click, some all clicked, graded labels,
    scores rounded so that many tie (the tie rules are where a vectorised path could go wrong)."""
    rng = np.random.default_rng(seed)
    labels, scores = [], []
    for _ in range(600):
        n = int(rng.integers(1, 41))
        y = (rng.random(n) < rng.choice([0.0, 0.1, 0.5, 1.0])).astype(np.float64)
        if rng.random() < 0.05:
            y *= 2  # a graded label (gain 3)
        labels.append(y)
        scores.append(np.round(rng.normal(size=n), int(rng.integers(0, 3))).astype(np.float32))
    return labels, scores


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_metrics_equal_the_reference_loop_exactly(seed: int) -> None:
    labels, scores = _random_impressions(seed)
    offsets = np.concatenate([[0], np.cumsum([len(y) for y in labels])])
    values = metrics_by_impression(np.concatenate(labels), np.concatenate(scores), offsets)
    for i, (y, s) in enumerate(zip(labels, scores, strict=True)):
        assert values["clicked"][i] == (y > 0).any()
        assert values["auc_used"][i] == ((y > 0).any() and not (y > 0).all())
        if values["clicked"][i]:
            assert values["mrr"][i] == mrr_score(y, s)
            assert values["ndcg@5"][i] == ndcg_score(y, s, 5)
            assert values["ndcg@10"][i] == ndcg_score(y, s, 10)
        if values["auc_used"][i]:
            assert values["auc"][i] == auc_score(y, s)
    # the means over any subset, in impression order, are the loop's to the last bit
    for keep in (None, np.arange(0, 600, 3), np.arange(600) % 2 == 1, np.array([], dtype=np.int64)):
        idx = np.arange(600) if keep is None else (np.flatnonzero(keep) if keep.dtype == bool else keep)
        expected = impression_metrics([labels[i] for i in idx], [scores[i] for i in idx])
        got = mean_metrics(values, keep)
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == value or (math.isnan(got[key]) and math.isnan(value)), key


def test_vectorised_metrics_take_empty_impressions_and_reject_misaligned_input() -> None:
    values = metrics_by_impression(arr(1, 0, 0, 1), arr(0.3, 0.1, 0.2, 0.2), np.array([0, 2, 2, 4]))
    assert values["clicked"].tolist() == [True, False, True]
    assert values["auc"][0] == 1.0 and values["auc"][2] == 0.5 and math.isnan(values["mrr"][1])
    with pytest.raises(ValueError, match="same flat impressions"):
        metrics_by_impression(arr(1, 0), arr(0.3, 0.1, 0.2), np.array([0, 2]))
