"""MIND metrics against values computed by hand (issue 4 §5)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.metrics import auc_score, impression_metrics, mrr_score, ndcg_score


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
