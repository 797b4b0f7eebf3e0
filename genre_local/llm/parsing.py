"""Turning raw model text into validated, normalized task outputs. Pure functions only.

Every backend's output goes through here, constrained or not: a constrained decoder guarantees
the JSON shape but not everything we require (duplicates, copies of the history, blank text),
and an unconstrained one may wrap the JSON in prose or markup, or stop mid-object.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from genre_local.data.taxonomy import CATEGORIES, PROFILE_TOPICS, US_STATES

TITLE_MIN_CHARS = 3
TITLE_MAX_CHARS = 120
ABSTRACT_MAX_CHARS = 300
PROFILE_MAX_TOPICS = 5
PROFILE_MAX_REGIONS = 3
NO_STATE = "none"  # a news label's state when the headline names no US place

_TOPIC_LOOKUP = {t.lower(): t for t in PROFILE_TOPICS}
_STATE_LOOKUP = {s.lower(): s for s in US_STATES}
_CATEGORY_LOOKUP = {c.lower(): c for c in CATEGORIES}

_FENCE = re.compile(r"```(?:json|JSON)?")
_TAG = re.compile(r"</?[A-Za-z][^<>]{0,80}>")
_MARKUP = re.compile(r"(\*\*|__|`|^#+\s*)", re.MULTILINE)
_LABEL = re.compile(r"^(enhanced\s+title|new\s+title|title|headline)\s*:\s*", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_PLACEHOLDER = re.compile(r"[{}<>]|^(the )?new headline$|^headline$", re.IGNORECASE)


@dataclass(frozen=True)
class Parsed:
    """A validated output (`value` JSON-ready) or the reason it was rejected."""

    value: dict[str, Any] | None
    error: str | None

    @property
    def valid(self) -> bool:
        return self.error is None


def _ok(value: dict[str, Any]) -> Parsed:
    return Parsed(value, None)


def _bad(error: str) -> Parsed:
    return Parsed(None, error)


def extract_json_object(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The first complete top-level JSON object in `text`, ignoring prose and code fences."""
    cleaned = _FENCE.sub("", text or "")
    start = cleaned.find("{")
    if start < 0:
        return None, "no JSON object in the output" if cleaned.strip() else "empty output"
    depth = 0
    in_string = False
    escaped = False
    for index in range(start, len(cleaned)):
        char = cleaned[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                try:
                    value = json.loads(cleaned[start : index + 1])
                except json.JSONDecodeError as exc:
                    return None, f"malformed JSON ({exc.msg})"
                return value, None
    return None, "truncated JSON (the object never closes)"


def clean_text(value: Any) -> str:
    """Strip HTML tags, markdown emphasis, 'Title:' labels, wrapping quotes and extra spaces."""
    if not isinstance(value, str):
        return ""
    text = _TAG.sub(" ", value)
    text = _MARKUP.sub("", text)
    text = _SPACE.sub(" ", text).strip()
    text = _LABEL.sub("", text)
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def normalize_title_key(title: str) -> str:
    """Comparison key for 'is this a copy of that title'."""
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


def _check_title(value: Any, what: str, max_chars: int = TITLE_MAX_CHARS) -> tuple[str | None, str | None]:
    title = clean_text(value)
    if len(title) < TITLE_MIN_CHARS:
        return None, f"{what} is empty or too short"
    if len(title) > max_chars:
        return None, f"{what} is longer than {max_chars} characters"
    if _PLACEHOLDER.search(title):
        # Small models copy the answer format's "<the new headline>" instead of filling it in.
        return None, f"{what} is a template placeholder"
    return title, None


def parse_summary(text: str, max_chars: int = TITLE_MAX_CHARS) -> Parsed:
    """Summarizer output: {"title": "..."} -> the cleaned enhanced title (at most max_chars)."""
    obj, error = extract_json_object(text)
    if error:
        return _bad(error)
    if not isinstance(obj, dict) or "title" not in obj:
        return _bad("JSON lacks the 'title' field")
    title, error = _check_title(obj["title"], "title", max_chars)
    if error:
        return _bad(error)
    return _ok({"title": title})


def _canonical_list(values: Any, lookup: dict[str, str], limit: int) -> tuple[list[str], list[str]]:
    """Known values in canonical spelling (first occurrence kept), and the unknown ones."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        return [], []
    known: list[str] = []
    unknown: list[str] = []
    for value in values:
        key = clean_text(value).lower() if isinstance(value, str) else ""
        canonical = lookup.get(key)
        if canonical is None:
            unknown.append(str(value))
        elif canonical not in known:
            known.append(canonical)
    return known[:limit], unknown


def parse_profile(text: str, max_topics: int = PROFILE_MAX_TOPICS, max_regions: int = PROFILE_MAX_REGIONS) -> Parsed:
    """Profiler output: {"topics": [...], "regions": [...]} with topics from the 19 and US states,
    the first max_topics and max_regions kept.

    Unknown topics and regions are dropped rather than failing the whole profile; a profile
    with no known topic left is invalid.
    """
    obj, error = extract_json_object(text)
    if error:
        return _bad(error)
    if not isinstance(obj, dict) or "topics" not in obj:
        return _bad("JSON lacks the 'topics' field")
    topics, unknown = _canonical_list(obj["topics"], _TOPIC_LOOKUP, max_topics)
    if not topics:
        shown = ", ".join(unknown[:3]) or "none"
        return _bad(f"no known interest topic (got: {shown})")
    regions, _ = _canonical_list(obj.get("regions", []), _STATE_LOOKUP, max_regions)
    return _ok({"topics": topics, "regions": regions})


def parse_label(text: str) -> Parsed:
    """News labeller output: {"topic": "<one of the 19>", "state": "<US state>" | "none"} ->
    {"topic": ..., "state": ... | None}. An unknown topic is invalid; an unknown state reads as
    none (a label without a place still says what the news is about)."""
    obj, error = extract_json_object(text)
    if error:
        return _bad(error)
    if not isinstance(obj, dict) or "topic" not in obj:
        return _bad("JSON lacks the 'topic' field")
    topics, unknown = _canonical_list(obj["topic"], _TOPIC_LOOKUP, 1)
    if not topics:
        return _bad(f"no known interest topic (got: {', '.join(unknown[:1]) or 'none'})")
    states, _ = _canonical_list(obj.get("state", NO_STATE), _STATE_LOOKUP, 1)
    return _ok({"topic": topics[0], "state": states[0] if states else None})


def parse_scored_label(text: str) -> Parsed:
    """The per-news scorer's output (`--profile-method label-score`): a label as parse_label reads
    it plus "topic_scores", a probability for each of the 19 topics -> the label with
    "topic_scores" as a list in PROFILE_TOPICS' order."""
    label = parse_label(text)
    if label.value is None:
        return label
    obj, _ = extract_json_object(text)
    scores = obj.get("topic_scores") if isinstance(obj, dict) else None
    if not isinstance(scores, dict) or set(scores) != set(PROFILE_TOPICS):
        return _bad("JSON lacks a 'topic_scores' object with every topic")
    values = [scores[t] for t in PROFILE_TOPICS]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in values):
        return _bad("a topic score is not a probability")
    if sum(values) <= 0:
        return _bad("the topic scores are all zero")
    return _ok({**label.value, "topic_scores": [float(v) for v in values]})


def parse_news(text: str, per_user: int, history_titles: list[str] | tuple[str, ...] = ()) -> Parsed:
    """Generator output: {"items": [{"title", "abstract", "category"}, ...]} with K items.

    Extra items beyond K are cut; fewer is invalid. Items must have distinct titles that are
    not copies of the user's history, and a category among the 18 MIND categories.
    """
    obj, error = extract_json_object(text)
    if error:
        return _bad(error)
    items = obj.get("items") if isinstance(obj, dict) else None
    if not isinstance(items, list):
        return _bad("JSON lacks the 'items' list")
    if len(items) < per_user:
        return _bad(f"{len(items)} items, expected {per_user}")
    seen = {normalize_title_key(t) for t in history_titles}
    history_keys = set(seen)
    result = []
    for number, item in enumerate(items[:per_user], start=1):
        if not isinstance(item, dict):
            return _bad(f"item {number} is not an object")
        title, error = _check_title(item.get("title"), f"item {number} title")
        if error:
            return _bad(error)
        key = normalize_title_key(title)
        if key in history_keys:
            return _bad(f"item {number} copies a history title ('{title}')")
        if key in seen:
            return _bad(f"item {number} repeats another item's title")
        seen.add(key)
        abstract = clean_text(item.get("abstract", ""))[:ABSTRACT_MAX_CHARS]
        category = _CATEGORY_LOOKUP.get(clean_text(item.get("category")).lower())
        if category is None:
            return _bad(f"item {number} has unknown category '{item.get('category')}'")
        result.append({"title": title, "abstract": abstract, "category": category})
    return _ok({"items": result})
