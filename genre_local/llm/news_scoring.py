"""Per-news topic scoring (issue 9 part 6, BENCHMARKS.md section 8c): the LLM's likelihood of
each of the 19 topics as the answer to the labelling prompt (`{"topic": "` then the topic), for
every clicked news once, calibrated and summed per user. Pure functions only; the engine calls
live in scripts/bench_news_scoring.py until a method ships.

Why: decoding one label per news keeps only the model's first choice, which is right for 22%
of news (random: 8.9%) and leans on a few favourite labels (finance, disasters). A full
distribution per news keeps the runners-up, and calibration divides out the model's own
preference for some labels, so what adds up over a user's clicks is what the headlines raise.

Calibration (Zhao et al. 2021, "Calibrate before use"): p(t | news) / p(t | prior), then
renormalised over the 19 topics. Two priors: a content-free input (the same prompt with a
placeholder headline), or the mean distribution over the news being scored ("batch
calibration", Zhou et al. 2023), which needs no placeholder but depends on the set of news.
Neither reads any category of the data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def normalised(logprobs: Sequence[float]) -> list[float]:
    """Log-probabilities of the allowed labels -> a distribution over just those labels (the
    model also gives mass to tokens outside the list; renormalising drops it)."""
    if not logprobs:
        raise ValueError("no label log-probabilities")
    top = max(logprobs)
    weights = [math.exp(x - top) for x in logprobs]
    total = sum(weights)
    return [w / total for w in weights]


def mean_distribution(rows: Sequence[Sequence[float]]) -> list[float]:
    """The average of several label distributions (all of one length): the prior of a set of
    inputs, content-free ones or the scored news themselves."""
    if not rows:
        raise ValueError("no distributions to average")
    width = len(rows[0])
    if any(len(row) != width for row in rows):
        raise ValueError("distributions of different lengths")
    return [sum(row[i] for row in rows) / len(rows) for i in range(width)]


def calibrate(distribution: Sequence[float], prior: Sequence[float]) -> list[float]:
    """p(t) / prior(t), renormalised: a label gains where the input raises it above the prior."""
    if len(distribution) != len(prior):
        raise ValueError(f"{len(distribution)} probabilities but a prior of {len(prior)}")
    if any(p <= 0 for p in prior):
        raise ValueError("a prior probability is not positive")
    ratios = [p / q for p, q in zip(distribution, prior)]
    total = sum(ratios)
    return [r / total for r in ratios]


def soft_counts(distributions: Sequence[Sequence[float]], width: int) -> list[float]:
    """A user's topic weights: the sum over their clicked news of each news' distribution."""
    totals = [0.0] * width
    for row in distributions:
        if len(row) != width:
            raise ValueError(f"a distribution of {len(row)} labels, expected {width}")
        for i, p in enumerate(row):
            totals[i] += p
    return totals


def argmax_counts(distributions: Sequence[Sequence[float]], width: int) -> list[float]:
    """A user's topic weights: how many of their clicked news have the topic as best label
    (ties to the label listed first), plus the soft counts / (clicks + 1), under one count, so
    that equal counts are ordered by the distributions without ever overturning a count."""
    counts = [0.0] * width
    for row in distributions:
        if len(row) != width:
            raise ValueError(f"a distribution of {len(row)} labels, expected {width}")
        best = max(range(width), key=lambda i: (row[i], -i))
        counts[best] += 1.0
    soft = soft_counts(distributions, width)
    scale = 1.0 / (len(distributions) + 1)
    return [c + s * scale for c, s in zip(counts, soft)]
