"""JSON schemas handed to constrained decoders, one per task, built from the GENRE taxonomy.

Bounds here are a little tighter than the validator's limits in parsing.py, so that an
output the decoder allowed is never rejected for length.
"""

from __future__ import annotations

from typing import Any

from genre_local.data.taxonomy import CATEGORIES, PROFILE_TOPICS, US_STATES
from genre_local.llm.parsing import NO_STATE, PROFILE_MAX_REGIONS, PROFILE_MAX_TOPICS

SCHEMA_TITLE_MAX = 90
SCHEMA_ABSTRACT_MAX = 160


def _title(max_chars: int = SCHEMA_TITLE_MAX) -> dict[str, Any]:
    return {"type": "string", "minLength": 8, "maxLength": max_chars}


def summary_schema(max_chars: int = SCHEMA_TITLE_MAX) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"title": _title(max_chars)},
        "required": ["title"],
        "additionalProperties": False,
    }


def profile_schema(max_topics: int = PROFILE_MAX_TOPICS, max_regions: int = PROFILE_MAX_REGIONS) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "topics": {"type": "array", "items": {"enum": list(PROFILE_TOPICS)}, "minItems": 1, "maxItems": max_topics},
            "regions": {"type": "array", "items": {"enum": list(US_STATES)}, "maxItems": max_regions},
        },
        "required": ["topics", "regions"],
        "additionalProperties": False,
    }


def label_schema() -> dict[str, Any]:
    """One news item's label (the labelling profiler): one topic, one US state or "none"."""
    return {
        "type": "object",
        "properties": {"topic": {"enum": list(PROFILE_TOPICS)}, "state": {"enum": [*US_STATES, NO_STATE]}},
        "required": ["topic", "state"],
        "additionalProperties": False,
    }


def news_schema(per_user: int) -> dict[str, Any]:
    item = {
        "type": "object",
        "properties": {
            "title": _title(),
            "abstract": {"type": "string", "minLength": 1, "maxLength": SCHEMA_ABSTRACT_MAX},
            "category": {"enum": list(CATEGORIES)},
        },
        "required": ["title", "abstract", "category"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"items": {"type": "array", "items": item, "minItems": per_user, "maxItems": per_user}},
        "required": ["items"],
        "additionalProperties": False,
    }
