"""Statistics over seeds: mean ± sample std and the paired t-test, as the paper reports them.

The only implementation `train` (its summary line) and `report` (every table) use, so the two
never disagree about a p-value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


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
