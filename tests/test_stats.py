"""recsys.stats.paired_difference: intervals and TOST against the closed form of Student's t
with 2 degrees of freedom (F(x) = 1/2 + x / (2 sqrt(x^2 + 2)))."""

from __future__ import annotations

import math
import random

import pytest

from recsys.stats import paired_difference, paired_p_value


def t2_quantile(q: float) -> float:
    a = 2 * q - 1
    return a * math.sqrt(2 / (1 - a * a))


def t2_tail(x: float) -> float:  # P(T > x), 2 df
    return 0.5 - x / (2 * math.sqrt(x * x + 2))


def test_intervals_and_tost_match_the_closed_form() -> None:
    ours, theirs = [0.61, 0.62, 0.63], [0.60, 0.60, 0.60]  # diffs .01 .02 .03: mean .02, sd .01
    se = 0.01 / math.sqrt(3)
    d = paired_difference(ours, theirs, margin=0.05)
    assert (d.n, d.mean, d.std) == (3, pytest.approx(0.02), pytest.approx(0.01))
    assert d.ci95 == pytest.approx((0.02 - t2_quantile(0.975) * se, 0.02 + t2_quantile(0.975) * se))
    assert d.ci90 == pytest.approx((0.02 - t2_quantile(0.95) * se, 0.02 + t2_quantile(0.95) * se))
    # the binding one-sided test is the upper bound's: H0 difference >= +0.05
    assert d.tost_p == pytest.approx(t2_tail((0.05 - 0.02) / se))
    assert d.p_value == paired_p_value(ours, theirs)
    assert d.equivalent  # 90 % interval 0.003..0.037 inside ±0.05
    tight = paired_difference(ours, theirs, margin=0.02)
    assert not tight.equivalent and tight.tost_p > 0.05  # the interval reaches above +0.02


def test_equivalent_exactly_when_tost_p_is_below_alpha() -> None:
    rng = random.Random(3)
    seen = set()
    for _ in range(200):
        theirs = [rng.uniform(0.55, 0.62) for _ in range(rng.randint(2, 13))]
        ours = [b + rng.gauss(rng.uniform(-0.01, 0.01), rng.uniform(0.001, 0.02)) for b in theirs]
        d = paired_difference(ours, theirs, margin=0.01)
        assert d.equivalent == (d.tost_p < 0.05)
        assert d.ci95[0] < d.ci90[0] < d.mean < d.ci90[1] < d.ci95[1]
        seen.add(d.equivalent)
    assert seen == {True, False}  # both outcomes were exercised


def test_edge_cases() -> None:
    assert paired_difference([0.6], [0.5], margin=0.01) is None  # one pair
    assert paired_difference([0.6, float("nan")], [0.5, 0.5], margin=0.01) is None  # one pair left
    # constant differences (exact binary fractions: std exactly 0): the intervals collapse
    const = paired_difference([0.75, 0.625], [0.5, 0.375], margin=0.5)
    assert const.std == 0 and const.ci90 == (0.25, 0.25) and const.equivalent and const.tost_p == 0.0
    outside = paired_difference([0.75, 0.625], [0.5, 0.375], margin=0.125)
    assert not outside.equivalent and outside.tost_p == 1.0
    with pytest.raises(ValueError, match="margin"):
        paired_difference([0.6, 0.7], [0.5, 0.6], margin=0)


def test_verdict_reads_the_intervals_as_the_pre_registered_rule() -> None:
    from recsys.stats import PairedDifference, verdict

    def diff(ci90, ci95, margin=0.01):
        return PairedDifference(10, sum(ci90) / 2, 0.01, 0.5, ci95, ci90, margin, 0.5)

    assert verdict(diff((-0.02, -0.012), (-0.021, -0.001))) == "worse"  # 95 % CI below 0 wins over the margin
    assert verdict(diff((0.002, 0.01), (0.001, 0.011))) == "better"
    assert verdict(diff((-0.009, 0.01), (-0.011, 0.012))) == "non-inferior"  # 90 % lower bound above -margin
    assert verdict(diff((-0.0101, 0.01), (-0.012, 0.012))) == "inconclusive"
    assert verdict(diff((-0.0101, 0.01), (-0.012, 0.012), margin=0.02)) == "non-inferior"
