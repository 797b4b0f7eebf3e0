"""The scored profiler: instead of letting a small model write a profile, read its own
likelihood of every allowed topic and US state as the start of its answer, calibrate it
against the same prompt with no history, and keep the best.

Why: the embedded 135M model writes near-chance profiles (issue 9 part 6). Asked for the
log-probability of each label after `{"topics": ["` it ranks labels by what the headlines
make likely, but also by a prior of its own (some words are simply likely). Contextual
calibration (Zhao et al. 2021, "Calibrate before use") removes that prior: each label's
score is log P(label | history) - log P(label | no history), so a label wins when the
history raises it, not when the model always likes it. The LLM still does all the work:
no category or entity of the data is read, only the headlines in the prompt.

Requests carrying a `ProfileScoring` go through `Backend.score`; `complete` routes a batch
so the runner, the shard workers and Ray's CPU actors need no other change.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from genre_local.data.taxonomy import PROFILE_TOPICS, US_STATES
from genre_local.llm.backend import Backend, GenRequest, GenResult, ScoreRequest

# The answer's start up to the first label: the profile prompt asks for exactly this JSON.
TOPIC_PREFIX = '{"topics": ["'
REGION_PREFIX = '{"regions": ["'
SCORED_FINISH = "scored"


@dataclass(frozen=True)
class ProfileScoring:
    """How one user's profile is scored. `calibration_messages` is the same prompt with an
    empty history (the content-free input whose scores are subtracted)."""

    calibration_messages: tuple[dict[str, str], ...]
    topics: tuple[str, ...] = PROFILE_TOPICS
    regions: tuple[str, ...] = US_STATES
    topic_prefix: str = TOPIC_PREFIX
    region_prefix: str = REGION_PREFIX
    top_topics: int = 3  # precision@3 reads three; the profiler prompt allows up to five
    top_regions: int = 1  # one home state per user in the synthetic truth
    calibrate: bool = True

    def key(self) -> dict[str, Any]:
        """What the fingerprint must see besides the prompt (whose version covers the wording)."""
        return {
            "method": "score",
            "topic_prefix": self.topic_prefix,
            "region_prefix": self.region_prefix,
            "top_topics": self.top_topics,
            "top_regions": self.top_regions,
            "calibration": "empty history" if self.calibrate else "none",
        }

    def as_json(self) -> str:
        return json.dumps({"calibration_messages": list(self.calibration_messages), **{
            name: getattr(self, name) for name in
            ("topics", "regions", "topic_prefix", "region_prefix", "top_topics", "top_regions", "calibrate")
        }}, ensure_ascii=False)

    @staticmethod
    def from_json(text: str) -> ProfileScoring:
        data = json.loads(text)
        return ProfileScoring(
            calibration_messages=tuple(data["calibration_messages"]), topics=tuple(data["topics"]),
            regions=tuple(data["regions"]), topic_prefix=data["topic_prefix"], region_prefix=data["region_prefix"],
            top_topics=int(data["top_topics"]), top_regions=int(data["top_regions"]), calibrate=bool(data["calibrate"]),
        )


@dataclass(frozen=True)
class ScoredProfile:
    topics: list[str]
    regions: list[str]
    topic_scores: dict[str, float] = field(default_factory=dict)  # calibrated, every label
    region_scores: dict[str, float] = field(default_factory=dict)


# -- pure combiner -------------------------------------------------------------------------------


def calibrated(logprobs: Sequence[float], content_free: Sequence[float] | None) -> list[float]:
    """log P(label | history) - log P(label | no history); unchanged without a content-free score."""
    if content_free is None:
        return list(logprobs)
    if len(content_free) != len(logprobs):
        raise ValueError(f"{len(logprobs)} scores but {len(content_free)} content-free scores")
    return [score - base for score, base in zip(logprobs, content_free)]


def top_labels(labels: Sequence[str], scores: Sequence[float], k: int) -> list[str]:
    """The k best labels, best first; ties keep the labels' own order (deterministic)."""
    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} labels but {len(scores)} scores")
    order = sorted(range(len(labels)), key=lambda i: (-scores[i], i))
    return [labels[i] for i in order[: max(0, k)]]


def choose_profile(
    spec: ProfileScoring,
    topic_logprobs: Sequence[float],
    region_logprobs: Sequence[float],
    topic_content_free: Sequence[float] | None = None,
    region_content_free: Sequence[float] | None = None,
) -> ScoredProfile:
    """Log-probabilities (in the spec's label order) -> the profile: top topics and regions."""
    topic_scores = calibrated(topic_logprobs, topic_content_free if spec.calibrate else None)
    region_scores = calibrated(region_logprobs, region_content_free if spec.calibrate else None)
    return ScoredProfile(
        top_labels(spec.topics, topic_scores, spec.top_topics),
        top_labels(spec.regions, region_scores, spec.top_regions),
        dict(zip(spec.topics, topic_scores)),
        dict(zip(spec.regions, region_scores)),
    )


# -- through a backend ---------------------------------------------------------------------------


def _score_requests(messages: tuple[dict[str, str], ...], spec: ProfileScoring) -> list[ScoreRequest]:
    return [ScoreRequest(messages, spec.topic_prefix, spec.topics), ScoreRequest(messages, spec.region_prefix, spec.regions)]


def score_profiles(backend: Backend, requests: Sequence[GenRequest]) -> list[GenResult]:
    """Every request (each with a ProfileScoring) -> its profile as the profiler's JSON answer.

    One backend.score call: two score requests per user, plus two per distinct content-free
    prompt, whose tokens are charged to the first request that uses it.
    """
    specs: list[ProfileScoring] = [r.scoring for r in requests]
    if any(s is None for s in specs):
        raise ValueError("score_profiles got a request without scoring")
    calibration_of: dict[str, int] = {}  # content-free prompt -> index of its first score request
    batch: list[ScoreRequest] = []
    own: list[int] = []
    for request, spec in zip(requests, specs):
        own.append(len(batch))
        batch.extend(_score_requests(request.messages, spec))
    charged: dict[int, int] = {}  # request index -> calibration score requests charged to it
    for index, spec in enumerate(specs):
        if not spec.calibrate:
            continue
        key = json.dumps([list(spec.calibration_messages), spec.topic_prefix, spec.region_prefix, spec.topics, spec.regions])
        if key not in calibration_of:
            calibration_of[key] = len(batch)
            charged[index] = len(batch)
            batch.extend(_score_requests(spec.calibration_messages, spec))
    scores = backend.score(batch)
    results = []
    for index, (spec, first) in enumerate(zip(specs, own)):
        topic, region = scores[first], scores[first + 1]
        base_topic = base_region = None
        if spec.calibrate:
            key = json.dumps([list(spec.calibration_messages), spec.topic_prefix, spec.region_prefix, spec.topics, spec.regions])
            base = calibration_of[key]
            base_topic, base_region = scores[base].logprobs, scores[base + 1].logprobs
        profile = choose_profile(spec, topic.logprobs, region.logprobs, base_topic, base_region)
        used = [topic, region] + ([scores[charged[index]], scores[charged[index] + 1]] if index in charged else [])
        results.append(GenResult(
            text=json.dumps({"topics": profile.topics, "regions": profile.regions}),
            prompt_tokens=sum(s.prompt_tokens for s in used),
            completion_tokens=sum(s.scored_tokens for s in used),
            finish_reason=SCORED_FINISH,
        ))
    return results


def complete(backend: Backend | None, requests: Sequence[GenRequest]) -> list[GenResult]:
    """Like backend.generate, in request order, except that requests carrying a ProfileScoring
    are answered by scoring (score_profiles), those carrying a NewsTopicScoring (label-score's
    per-news step, llm/news_scoring.py) by decoding and scoring, and those carrying a
    LabelAggregation (the labelling profilers, llm/news_labels.py) by aggregating labels, without
    the engine (so `backend` may be None when every request is one of those)."""
    from genre_local.llm.news_labels import LabelAggregation, aggregate_requests
    from genre_local.llm.news_scoring import NewsTopicScoring, score_news_topics

    aggregated = [i for i, r in enumerate(requests) if isinstance(r.scoring, LabelAggregation)]
    scored = [i for i, r in enumerate(requests) if isinstance(r.scoring, ProfileScoring)]
    news_scored = [i for i, r in enumerate(requests) if isinstance(r.scoring, NewsTopicScoring)]
    decoded = [i for i, r in enumerate(requests) if r.scoring is None]
    if len(aggregated) + len(scored) + len(news_scored) + len(decoded) != len(requests):
        raise ValueError("a request carries a scoring spec of an unknown kind")
    results: list[GenResult | None] = [None] * len(requests)
    for indices, answer in ((aggregated, aggregate_requests), (scored, lambda rs: score_profiles(_engine(backend), rs)),
                            (news_scored, lambda rs: score_news_topics(_engine(backend), rs)),
                            (decoded, lambda rs: _engine(backend).generate(rs))):
        if indices:
            for i, result in zip(indices, answer([requests[i] for i in indices])):
                results[i] = result
    return [r for r in results if r is not None]


def _engine(backend: Backend | None) -> Backend:
    if backend is None:
        raise ValueError("requests that need the engine were given no backend")
    return backend
