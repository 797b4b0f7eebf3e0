"""The labelling profiler (`--profile-method label`, issue 9 part 6): the LLM labels each news
item a user clicked (its interest topic among the 19, and the US state it is about or none),
and a user's profile is an aggregation of those labels, with no further engine call.

Why: labelling one headline is an easier question for a 135M model than summarising a whole
history; a wrong label spreads over topics while a user's true interests recur and add up; and
a news item is labelled once for every user who clicked it (cost per news, not per user).
The LLM still does all the work: no category, subcategory or entity of the data is read.

Requests carrying a `LabelAggregation` are answered here (`aggregate_requests`) without an
engine; the labels themselves are ordinary generations of the `label` task.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from genre_local.data.taxonomy import PROFILE_TOPICS
from genre_local.llm.backend import GenRequest, GenResult
from genre_local.llm.parsing import PROFILE_MAX_TOPICS
from genre_local.store.generations import Profile

AGGREGATED_FINISH = "aggregated"
# One home state per user in the synthetic truth; the most frequent labelled state is the guess.
LABEL_MAX_REGIONS = 1


@dataclass(frozen=True)
class NewsLabel:
    """One clicked news item's label: its topic, and the US state it is about (None: no place)."""

    topic: str
    state: str | None


def aggregate_profile(
    labels: Sequence[NewsLabel], max_topics: int = PROFILE_MAX_TOPICS, max_regions: int = LABEL_MAX_REGIONS
) -> Profile:
    """A user's profile from their clicked news' labels, oldest click first: the labelled topics
    by how many clicks carry them, strongest first (up to max_topics), and the most frequent
    labelled states (up to max_regions; none when no label names a state).

    Ties go to the label seen most recently (what a user reads now says most about them), then
    to the taxonomy's order, so the result is deterministic.
    """
    return Profile(_ranked([label.topic for label in labels], max_topics),
                   _ranked([label.state for label in labels if label.state], max_regions))


def _ranked(values: Sequence[str], limit: int) -> list[str]:
    count: dict[str, int] = {}
    last: dict[str, int] = {}
    for position, value in enumerate(values):
        count[value] = count.get(value, 0) + 1
        last[value] = position
    order = {topic: index for index, topic in enumerate(PROFILE_TOPICS)}
    ranked = sorted(count, key=lambda v: (-count[v], -last[v], order.get(v, len(order)), v))
    return ranked[: max(0, limit)]


@dataclass(frozen=True)
class LabelAggregation:
    """How one user's profile is made from labels (a GenRequest's `scoring`): no engine call."""

    labels: tuple[NewsLabel, ...]  # the user's clicked, labelled news, oldest first
    max_topics: int = PROFILE_MAX_TOPICS
    max_regions: int = LABEL_MAX_REGIONS

    def key(self) -> dict[str, Any]:
        """What the profile's fingerprint must see: the labels it was made from (a digest, so a
        profile is remade when a label it read changes) and the caps."""
        digest = hashlib.sha256(self.labels_json().encode("utf-8")).hexdigest()[:16]
        return {"method": "label", "labels": digest, "max_topics": self.max_topics, "max_regions": self.max_regions}

    def labels_json(self) -> str:
        return json.dumps([[label.topic, label.state] for label in self.labels], ensure_ascii=False)

    def messages(self) -> tuple[dict[str, str], ...]:
        """What the stored `prompt` shows for an aggregated profile: the labels it read."""
        return ({"role": "labels", "content": self.labels_json()},)

    def as_json(self) -> str:
        return json.dumps({"kind": "label", "labels": json.loads(self.labels_json()),
                           "max_topics": self.max_topics, "max_regions": self.max_regions})

    @staticmethod
    def from_json(text: str) -> LabelAggregation:
        data = json.loads(text)
        return LabelAggregation(tuple(NewsLabel(topic, state) for topic, state in data["labels"]),
                                int(data["max_topics"]), int(data["max_regions"]))


def aggregate_requests(requests: Sequence[GenRequest]) -> list[GenResult]:
    """Every request (each with a LabelAggregation) -> its profile as the profiler's JSON answer."""
    results = []
    for request in requests:
        spec = request.scoring
        if not isinstance(spec, LabelAggregation):
            raise ValueError("aggregate_requests got a request without a LabelAggregation")
        profile = aggregate_profile(spec.labels, spec.max_topics, spec.max_regions)
        text = json.dumps({"topics": profile.topics, "regions": profile.regions}, ensure_ascii=False)
        results.append(GenResult(text=text, prompt_tokens=0, completion_tokens=0, finish_reason=AGGREGATED_FINISH))
    return results


def needs_engine(request: GenRequest) -> bool:
    """False for an aggregated profile: a batch of only those never starts a model."""
    return not isinstance(request.scoring, LabelAggregation)
