"""The labelling profiler (`--profile-method label`, issue 9 part 6): the LLM labels each news
item a user clicked (its interest topic among the 19, and the US state it is about or none),
and a user's profile is an aggregation of those labels, with no further engine call.

Why: labelling one headline is an easier question for a 135M model than summarising a whole
history; a wrong label spreads over topics while a user's true interests recur and add up; and
a news item is labelled once for every user who clicked it (cost per news, not per user).
The LLM still does all the work: no category, subcategory or entity of the data is read.

Requests carrying a `LabelAggregation` are answered here (`aggregate_requests`) without an
engine; the labels themselves are ordinary generations of the `label` task.

`--profile-method label-score` (BENCHMARKS.md section 8c) reads `label_scores` rows instead:
each news' decoded label plus its 19 topic probabilities. Its topics are the soft counts of
those probabilities calibrated by the batch prior (the mean distribution over a fixed set of
news: every news in every user's window), its state the labelled state of largest excess
count over the same set's state shares. Both shares live in a `ScorePrior`, whose digest is
part of each profile's fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from genre_local.data.taxonomy import PROFILE_TOPICS
from genre_local.llm.backend import GenRequest, GenResult
from genre_local.llm.news_scoring import calibrate, soft_counts
from genre_local.llm.parsing import PROFILE_MAX_TOPICS
from genre_local.llm.topic_scoring import top_labels
from genre_local.store.generations import Profile

AGGREGATED_FINISH = "aggregated"
# One home state per user in the synthetic truth; the most frequent labelled state is the guess.
LABEL_MAX_REGIONS = 1


@dataclass(frozen=True)
class NewsLabel:
    """One clicked news item's label: its topic, and the US state it is about (None: no place);
    from `label_scores` also every topic's probability (PROFILE_TOPICS' order, uncalibrated)."""

    topic: str
    state: str | None
    topic_scores: tuple[float, ...] | None = None


@dataclass(frozen=True)
class ScorePrior:
    """What `label-score` profiles share, computed over one fixed set of news (each once): the
    batch prior (the mean topic distribution) and how many of the set's labels name each state."""

    topics: tuple[float, ...]
    states: tuple[tuple[str, int], ...]  # (state, labels naming it), by state
    news: int

    def digest(self) -> str:
        """Changes whenever the prior does (a profile's fingerprint holds it): exact floats."""
        payload = json.dumps([list(self.topics), [list(x) for x in self.states], self.news])
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

    def as_json(self) -> dict[str, Any]:
        return {"topics": list(self.topics), "states": [list(x) for x in self.states], "news": self.news}

    @staticmethod
    def from_json(data: dict[str, Any]) -> ScorePrior:
        return ScorePrior(tuple(float(x) for x in data["topics"]), tuple((str(s), int(c)) for s, c in data["states"]),
                          int(data["news"]))


def score_prior(labels: Mapping[str, NewsLabel]) -> ScorePrior:
    """The prior of a set of news (nid -> its scored label). Summed in nid order, so the same
    set gives the same floats whatever order it was scored or listed in."""
    if not labels:
        raise ValueError("no scored news to compute a prior from")
    ordered = [labels[nid] for nid in sorted(labels)]
    if any(label.topic_scores is None for label in ordered):
        raise ValueError("a news label of the prior's set carries no topic scores")
    width = len(ordered[0].topic_scores or ())
    totals = soft_counts([label.topic_scores or () for label in ordered], width)
    states: dict[str, int] = {}
    for label in ordered:
        if label.state:
            states[label.state] = states.get(label.state, 0) + 1
    return ScorePrior(tuple(t / len(ordered) for t in totals), tuple(sorted(states.items())), len(ordered))


def scored_profile(labels: Sequence[NewsLabel], prior: ScorePrior, max_topics: int = PROFILE_MAX_TOPICS,
                   max_regions: int = LABEL_MAX_REGIONS) -> Profile:
    """A `label-score` profile from the user's scored labels (oldest click first): topics by the
    sum of their news' distributions calibrated by the prior (ties in the taxonomy's order), and
    the labelled states by excess count, count_u(s) - n_u * share(s), where n_u is the user's
    labels naming a state and share(s) the prior set's (ties to the higher count, then the
    latest click). Section 8c's rule; excess count beat count on three seeds (8b, 8c)."""
    if any(label.topic_scores is None for label in labels):
        raise ValueError("a label-score profile was given a label without topic scores")
    calibrated = [calibrate(label.topic_scores or (), prior.topics) for label in labels]
    topics = top_labels(PROFILE_TOPICS, soft_counts(calibrated, len(prior.topics)), max_topics) if labels else []
    states = [label.state for label in labels if label.state]
    named = sum(count for _, count in prior.states)
    share = {state: count / named for state, count in prior.states} if named else {}
    return Profile(topics, _ranked(states, max_regions, lambda value, count: count - len(states) * share.get(value, 0.0)))


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


def _ranked(values: Sequence[str], limit: int, score: Callable[[str, int], float] | None = None) -> list[str]:
    """The values by score(value, count) (default: the count), then count, then the latest."""
    count: dict[str, int] = {}
    last: dict[str, int] = {}
    for position, value in enumerate(values):
        count[value] = count.get(value, 0) + 1
        last[value] = position
    order = {topic: index for index, topic in enumerate(PROFILE_TOPICS)}
    weight = {v: score(v, count[v]) if score is not None else count[v] for v in count}
    ranked = sorted(count, key=lambda v: (-weight[v], -count[v], -last[v], order.get(v, len(order)), v))
    return ranked[: max(0, limit)]


@dataclass(frozen=True)
class LabelAggregation:
    """How one user's profile is made from labels (a GenRequest's `scoring`): no engine call."""

    labels: tuple[NewsLabel, ...]  # the user's clicked, labelled news, oldest first
    max_topics: int = PROFILE_MAX_TOPICS
    max_regions: int = LABEL_MAX_REGIONS
    # `label-score`: the prior its scored labels are calibrated and weighed by (None: `label`).
    prior: ScorePrior | None = None

    @property
    def method(self) -> str:
        return "label" if self.prior is None else "label-score"

    def key(self) -> dict[str, Any]:
        """What the profile's fingerprint must see: the labels it was made from (a digest, so a
        profile is remade when a label it read changes), the caps, and the prior, if any."""
        digest = hashlib.sha256(self.labels_json().encode("utf-8")).hexdigest()[:16]
        key = {"method": self.method, "labels": digest, "max_topics": self.max_topics, "max_regions": self.max_regions}
        if self.prior is not None:
            key["prior"] = self.prior.digest()
        return key

    def labels_json(self) -> str:
        return json.dumps([[label.topic, label.state] + ([list(label.topic_scores)] if label.topic_scores else [])
                           for label in self.labels], ensure_ascii=False)

    def profile(self) -> Profile:
        if self.prior is not None:
            return scored_profile(self.labels, self.prior, self.max_topics, self.max_regions)
        return aggregate_profile(self.labels, self.max_topics, self.max_regions)

    def messages(self) -> tuple[dict[str, str], ...]:
        """What the stored `prompt` shows for an aggregated profile: the labels it read."""
        return ({"role": "labels", "content": self.labels_json()},)

    def as_json(self) -> str:
        data = {"kind": "label", "labels": json.loads(self.labels_json()),
                "max_topics": self.max_topics, "max_regions": self.max_regions}
        if self.prior is not None:
            data["prior"] = self.prior.as_json()
        return json.dumps(data)

    @staticmethod
    def from_json(text: str) -> LabelAggregation:
        data = json.loads(text)
        labels = tuple(NewsLabel(x[0], x[1], tuple(x[2]) if len(x) > 2 else None) for x in data["labels"])
        prior = ScorePrior.from_json(data["prior"]) if data.get("prior") else None
        return LabelAggregation(labels, int(data["max_topics"]), int(data["max_regions"]), prior)


def aggregate_requests(requests: Sequence[GenRequest]) -> list[GenResult]:
    """Every request (each with a LabelAggregation) -> its profile as the profiler's JSON answer."""
    results = []
    for request in requests:
        spec = request.scoring
        if not isinstance(spec, LabelAggregation):
            raise ValueError("aggregate_requests got a request without a LabelAggregation")
        profile = spec.profile()
        text = json.dumps({"topics": profile.topics, "regions": profile.regions}, ensure_ascii=False)
        results.append(GenResult(text=text, prompt_tokens=0, completion_tokens=0, finish_reason=AGGREGATED_FINISH))
    return results


def needs_engine(request: GenRequest) -> bool:
    """False for an aggregated profile: a batch of only those never starts a model."""
    return not isinstance(request.scoring, LabelAggregation)
