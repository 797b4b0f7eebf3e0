"""How close generated profiles come to the synthetic data's true interests (pure functions),
and what a profile picked at random would score on the same users (the chance level)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from genre_local.data.taxonomy import PROFILE_TOPICS, US_STATES


@dataclass(frozen=True)
class ChanceLevels:
    """The expected fidelity of a uniformly random profile with as many topics and regions as
    each measured profile, for the same users and truth (exact expectations, not simulated)."""

    precision_at_3: float
    recall: float
    region_accuracy: float


@dataclass(frozen=True)
class Fidelity:
    precision_at_3: float  # share of the top-3 predicted topics that are true interests
    recall: float  # share of the true topics that the profile names at all
    region_accuracy: float  # the true home state is among the predicted regions
    users: int
    chance: ChanceLevels  # the same metrics for random profiles of the same sizes

    def ratio_to_chance(self) -> ChanceLevels:
        """Measured / chance per metric (inf where chance is 0 and the measure is not)."""
        return ChanceLevels(
            _ratio(self.precision_at_3, self.chance.precision_at_3),
            _ratio(self.recall, self.chance.recall),
            _ratio(self.region_accuracy, self.chance.region_accuracy),
        )


def _ratio(measured: float, chance: float) -> float:
    if chance > 0:
        return measured / chance
    return float("inf") if measured > 0 else 1.0


def chance_levels(
    profiles: Mapping[str, tuple[Sequence[str], Sequence[str]]],
    truth: Mapping[str, tuple[Sequence[str], str]],
    topics: Sequence[str] = PROFILE_TOPICS,
    regions: Sequence[str] = US_STATES,
) -> ChanceLevels | None:
    """The exact expectation of `profile_fidelity` when every user's profile is replaced by
    one drawn uniformly at random (without replacement) from `topics` and `regions`, keeping
    the number of topics and regions of the user's actual profile (capped at the list sizes).

    Per user with true topics T and k predicted topics (n = len(topics)):
    precision@3 = min(k, 3) * |T| / n / 3, recall = k / n; with r predicted regions of m:
    region accuracy = r / m when the truth has a region, else 1 if r == 0 (certain) else 0.
    Users and the no-truth conventions are those of `profile_fidelity`.
    """
    users = sorted(set(profiles) & set(truth))
    if not users:
        return None
    n, m = len(topics), len(regions)
    allowed = set(topics)
    precision = recall = region = 0.0
    for user in users:
        predicted_topics, predicted_regions = profiles[user]
        true_topics, true_region = truth[user]
        # A true topic outside the list can never be drawn at random.
        true_drawable = len(set(true_topics) & allowed)
        k = min(len(set(predicted_topics)), n)
        r = min(len(set(predicted_regions)), m)
        precision += min(k, 3) * true_drawable / n / 3
        recall += (true_drawable * k / n) / len(set(true_topics)) if true_topics else 1.0
        region += (r / m if true_region else (1.0 if r == 0 else 0.0))
    count = len(users)
    return ChanceLevels(precision / count, recall / count, region / count)


def profile_fidelity(
    profiles: Mapping[str, tuple[Sequence[str], Sequence[str]]],
    truth: Mapping[str, tuple[Sequence[str], str]],
) -> Fidelity | None:
    """Averages over users that have both a profile and truth; None when there are none.

    Precision@3 divides by 3 even when the profile lists fewer topics (naming fewer is not
    rewarded); a user whose truth has no region counts as correct when no region is predicted.
    """
    users = sorted(set(profiles) & set(truth))
    chance = chance_levels(profiles, truth)
    if not users or chance is None:
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
    return Fidelity(precision / n, recall / n, region / n, n, chance)


def format_fidelity(f: Fidelity) -> str:
    """One line: each metric with its chance level and the ratio to chance."""
    ratio = f.ratio_to_chance()
    parts = [
        f"{name} {value:.3f} (chance {base:.3f}, {times:.1f}x)"
        for name, value, base, times in (
            ("precision@3", f.precision_at_3, f.chance.precision_at_3, ratio.precision_at_3),
            ("recall", f.recall, f.chance.recall, ratio.recall),
            ("region accuracy", f.region_accuracy, f.chance.region_accuracy, ratio.region_accuracy),
        )
    ]
    return ", ".join(parts) + f" over {f.users} users"
