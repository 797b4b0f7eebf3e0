"""Per-news topic scoring (issue 9 part 6, BENCHMARKS.md section 8c): the LLM's likelihood of
each of the 19 topics as the answer to the labelling prompt (`{"topic": "` then the topic), for
every clicked news once, calibrated and summed per user: `--profile-method label-score`, with
the batch prior (section 8c's rule that passed its held-out check). Pure functions first, then
the per-news scorer's way through a backend (`score_news_topics`); the profile's aggregation is
in llm/news_labels.py.

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

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from genre_local.data.taxonomy import PROFILE_TOPICS
from genre_local.llm.backend import Backend, GenRequest, GenResult, ScoreRequest


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


# -- the per-news scorer through a backend --------------------------------------------------------

# The labelling prompt's answer start up to the topic (prompts/compact/label.txt's JSON form).
TOPIC_ANSWER_PREFIX = '{"topic": "'
SCORES_FIELD = "topic_scores"
NEWS_TOPICS_KIND = "news-topics"  # a NewsTopicScoring's "kind" where planned rows travel as JSON


@dataclass(frozen=True)
class NewsTopicScoring:
    """How one news item's `label_scores` row is made (a GenRequest's `scoring`): the label
    decoded as the `label` task decodes it, and every topic's probability by its first token's
    likelihood after `answer_prefix`, renormalised over the topics. Not calibrated here: the
    batch prior is known only once every news of its set is scored (llm/news_labels.py).
    `messages` is the labelling prompt as first sent: a retry (after an invalid label) adds a
    note to the request's prompt, and the scores must not depend on whether one was needed."""

    messages: tuple[dict[str, str], ...]
    topics: tuple[str, ...] = PROFILE_TOPICS
    answer_prefix: str = TOPIC_ANSWER_PREFIX

    def key(self) -> dict[str, Any]:
        """What the fingerprint must see besides the prompt (whose version covers the wording)."""
        return {"method": "label-score", "answer_prefix": self.answer_prefix, "scored_by": "first token"}

    def as_json(self) -> str:
        return json.dumps({"kind": NEWS_TOPICS_KIND, "messages": list(self.messages), "topics": list(self.topics),
                           "answer_prefix": self.answer_prefix}, ensure_ascii=False)

    @staticmethod
    def from_json(text: str) -> NewsTopicScoring:
        data = json.loads(text)
        return NewsTopicScoring(tuple(data["messages"]), tuple(data["topics"]), data["answer_prefix"])


def with_scores(decoded: str, topics: Sequence[str], distribution: Sequence[float]) -> str:
    """The decoded label's JSON with the distribution added as {topic: probability}; a decoded
    answer that is not a JSON object stays as it is (its parser rejects it)."""
    try:
        obj = json.loads(decoded)
    except ValueError:
        return decoded
    if not isinstance(obj, dict):
        return decoded
    obj[SCORES_FIELD] = dict(zip(topics, distribution))
    return json.dumps(obj, ensure_ascii=False)


def score_news_topics(backend: Backend, requests: Sequence[GenRequest]) -> list[GenResult]:
    """Every request (each with a NewsTopicScoring) -> its decoded label plus its topic
    distribution. Two engine calls: one decoding batch, one scoring batch (one next-token query
    per news: candidates are scored by their first token, distinct for the 19 topics in SmolLM2's
    tokenizer; topics sharing a first token would score alike)."""
    specs = [r.scoring for r in requests]
    if not all(isinstance(s, NewsTopicScoring) for s in specs):
        raise ValueError("score_news_topics got a request without a NewsTopicScoring")
    decoded = backend.generate(requests)
    scores = backend.score([ScoreRequest(s.messages, s.answer_prefix, s.topics, first_token=True) for s in specs])
    return [
        GenResult(
            text=with_scores(answer.text, spec.topics, normalised(score.logprobs)),
            prompt_tokens=answer.prompt_tokens + score.prompt_tokens,
            completion_tokens=answer.completion_tokens + score.scored_tokens,
            finish_reason=answer.finish_reason,
        )
        for spec, answer, score in zip(specs, decoded, scores)
    ]
