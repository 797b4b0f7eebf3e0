"""Statistics over seeds: mean ± sample std and the paired t-test, as the paper reports them;
the paired difference with its intervals, TOST equivalence test and non-inferiority verdict
(benchmarks).

The only implementation `train` (its summary line) and `report` (every table) use, so the two
never disagree about a p-value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def finite(values: Sequence[float | None]) -> list[float]:
    """The values that are numbers (NaN and None mean "no qualifying impression")."""
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def mean_std(values: Sequence[float | None]) -> tuple[float, float | None]:
    """(mean, sample std with n-1) of the finite values; std is None with a single value and
    both are NaN/None with none."""
    kept = finite(values)
    if not kept:
        return float("nan"), None
    mean = math.fsum(kept) / len(kept)
    if len(kept) < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in kept) / (len(kept) - 1))


def paired_p_value(ours: Sequence[float], theirs: Sequence[float]) -> float | None:
    """Two-sided paired t-test (scipy.stats.ttest_rel) over aligned pairs; None below 2 pairs.

    Pairs with a NaN on either side are dropped first. Constant differences leave t undefined:
    that is called 1.0 when both sides are equal and 0.0 when they differ by a constant.
    """
    if len(ours) != len(theirs):
        raise ValueError(f"paired test needs aligned values, got {len(ours)} and {len(theirs)}")
    pairs = [(float(a), float(b)) for a, b in zip(ours, theirs, strict=True)
             if not (math.isnan(float(a)) or math.isnan(float(b)))]
    if len(pairs) < 2:
        return None
    import numpy as np
    from scipy.stats import ttest_rel

    left = np.array([a for a, _ in pairs])
    right = np.array([b for _, b in pairs])
    diffs = left - right
    if np.allclose(diffs, diffs[0]):
        return 1.0 if np.allclose(left, right) else 0.0
    p = float(ttest_rel(left, right).pvalue)
    return None if math.isnan(p) else p


@dataclass(frozen=True)
class PairedDifference:
    """The paired mean difference (ours − theirs) over seeds, with its t intervals and the two
    one-sided tests (TOST) of equivalence within ±margin."""

    n: int
    mean: float
    std: float
    p_value: float  # two-sided paired t-test (paired_p_value, same conventions)
    ci95: tuple[float, float]
    ci90: tuple[float, float]  # the TOST interval at alpha 0.05
    margin: float
    tost_p: float  # the larger of the two one-sided p-values

    @property
    def equivalent(self) -> bool:
        """Equivalence shown at alpha 0.05: the 90 % interval lies inside (−margin, +margin)."""
        return -self.margin < self.ci90[0] and self.ci90[1] < self.margin


def paired_difference(ours: Sequence[float], theirs: Sequence[float], margin: float) -> PairedDifference | None:
    """ours − theirs over aligned pairs (NaN pairs dropped, as paired_p_value); None below 2 pairs.

    TOST: H0 is |true difference| ≥ margin; it is rejected at alpha 0.05 exactly when the 90 %
    t interval lies inside ±margin (tost_p < 0.05). With constant differences the intervals
    collapse to the mean and tost_p is 0 inside the margin, 1 outside.
    """
    if margin <= 0:
        raise ValueError(f"equivalence margin must be > 0, got {margin}")
    p_value = paired_p_value(ours, theirs)
    if p_value is None:
        return None
    diffs = [float(a) - float(b) for a, b in zip(ours, theirs, strict=True)
             if not (math.isnan(float(a)) or math.isnan(float(b)))]
    mean, std = mean_std(diffs)
    assert std is not None  # >= 2 pairs, checked by paired_p_value
    from scipy.stats import t

    n, df = len(diffs), len(diffs) - 1
    se = std / math.sqrt(n)
    if se == 0:
        inside = abs(mean) < margin
        return PairedDifference(n, mean, std, p_value, (mean, mean), (mean, mean), margin, 0.0 if inside else 1.0)

    def interval(level: float) -> tuple[float, float]:
        half = float(t.ppf(0.5 + level / 2, df)) * se
        return mean - half, mean + half

    # H0 below: difference <= -margin (rejected by a large t); H0 above: difference >= +margin
    p_below = float(t.sf((mean + margin) / se, df))
    p_above = float(t.cdf((mean - margin) / se, df))
    return PairedDifference(n, mean, std, p_value, interval(0.95), interval(0.90), margin, max(p_below, p_above))


def verdict(difference: PairedDifference) -> str:
    """The non-inferiority reading of a paired difference (ours − theirs) at its margin: "better" or
    "worse" when the 95 % interval excludes 0 on that side, else "non-inferior" when the 90 %
    interval's lower bound is above −margin, else "inconclusive"."""
    if difference.ci95[1] < 0:
        return "worse"
    if difference.ci95[0] > 0:
        return "better"
    return "non-inferior" if difference.ci90[0] > -difference.margin else "inconclusive"
