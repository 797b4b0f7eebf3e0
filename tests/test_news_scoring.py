"""Per-news topic scoring's math (llm/news_scoring.py): renormalising label log-probabilities,
priors, calibration against a prior, and the per-user soft and argmax counts."""

from __future__ import annotations

import math

import pytest

from genre_local.llm.news_scoring import argmax_counts, calibrate, mean_distribution, normalised, soft_counts


def test_normalised_drops_mass_outside_the_labels_and_keeps_ratios():
    dist = normalised([math.log(0.2), math.log(0.1), math.log(0.1)])  # 0.6 went to other tokens
    assert dist == pytest.approx([0.5, 0.25, 0.25])
    # Very negative log-probabilities do not underflow to a division by zero.
    assert normalised([-2000.0, -2001.0]) == pytest.approx([1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))])
    with pytest.raises(ValueError):
        normalised([])


def test_mean_distribution_averages_per_label():
    assert mean_distribution([[0.5, 0.5, 0.0], [0.1, 0.3, 0.6]]) == pytest.approx([0.3, 0.4, 0.3])
    with pytest.raises(ValueError):
        mean_distribution([[0.5, 0.5], [1.0]])
    with pytest.raises(ValueError):
        mean_distribution([])


def test_calibrate_divides_out_the_prior():
    # The model likes label 0 everywhere (prior 0.8); an input at 0.6 on it is below its prior,
    # so after calibration the label the input raised (1: 0.3 vs 0.1) wins.
    prior = [0.8, 0.1, 0.1]
    after = calibrate([0.6, 0.3, 0.1], prior)
    assert sum(after) == pytest.approx(1.0)
    assert max(range(3), key=lambda i: after[i]) == 1
    assert after == pytest.approx([0.75 / 4.75, 3 / 4.75, 1 / 4.75])
    # A uniform prior changes nothing; the input equal to the prior becomes uniform.
    assert calibrate([0.6, 0.3, 0.1], [1 / 3] * 3) == pytest.approx([0.6, 0.3, 0.1])
    assert calibrate(prior, prior) == pytest.approx([1 / 3] * 3)
    with pytest.raises(ValueError):
        calibrate([0.5, 0.5], [1.0])
    with pytest.raises(ValueError):
        calibrate([0.5, 0.5], [1.0, 0.0])


def test_soft_counts_sum_each_label_over_the_news():
    assert soft_counts([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]], 3) == pytest.approx([0.8, 0.8, 0.4])
    assert soft_counts([], 2) == [0.0, 0.0]
    with pytest.raises(ValueError):
        soft_counts([[0.5, 0.5]], 3)


def test_argmax_counts_count_best_labels_and_break_ties_by_soft_counts_only():
    rows = [[0.5, 0.4, 0.1], [0.1, 0.5, 0.4], [0.34, 0.33, 0.33]]
    weights = argmax_counts(rows, 3)
    # Label 0 is best twice, label 1 once, label 2 never.
    assert [int(w) for w in weights] == [2, 1, 0]
    # Equal counts (labels 0 and 2 are each best once) are ordered by the soft counts (0.65 over
    # 0.6); label 1, best nowhere, stays below both though its soft count (0.75) is the largest.
    tie = argmax_counts([[0.6, 0.4, 0.0], [0.0, 0.35, 0.65]], 3)
    assert tie[2] > tie[0] > tie[1]
    many = [[0.49, 0.51, 0.0]] * 3 + [[1.0, 0.0, 0.0]]
    assert argmax_counts(many, 3)[1] > argmax_counts(many, 3)[0]  # 3 wins beat 1 win with more mass
    # Exact ties on one news go to the label listed first (deterministic).
    assert [int(w) for w in argmax_counts([[0.5, 0.5]], 2)] == [1, 0]
