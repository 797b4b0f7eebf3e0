"""How close generated profiles come to the synthetic data's true interests (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Fidelity:
    precision_at_3: float  # share of the top-3 predicted topics that are true interests
    recall: float  # share of the true topics that the profile names at all
    region_accuracy: float  # the true home state is among the predicted regions
    users: int


def profile_fidelity(
    profiles: Mapping[str, tuple[Sequence[str], Sequence[str]]],
    truth: Mapping[str, tuple[Sequence[str], str]],
) -> Fidelity | None:
    """Averages over users that have both a profile and truth; None when there are none.

    Precision@3 divides by 3 even when the profile lists fewer topics (naming fewer is not
    rewarded); a user whose truth has no region counts as correct when no region is predicted.
    """
    users = sorted(set(profiles) & set(truth))
    if not users:
        return None
    precision = recall = region = 0.0
    for user in users:
        topics, regions = profiles[user]
        true_topics, true_region = truth[user]
        true_set = set(true_topics)
        precision += len([t for t in list(topics)[:3] if t in true_set]) / 3
        recall += len(true_set & set(topics)) / len(true_set) if true_set else 1.0
        region += 1.0 if (true_region in regions if true_region else not regions) else 0.0
    n = len(users)
    return Fidelity(precision / n, recall / n, region / n, n)
