"""JSON schemas handed to constrained decoders, one per task, built from the GENRE taxonomy.

Bounds here are a little tighter than the validator's limits in parsing.py, so that an
output the decoder allowed is never rejected for length.
"""

from __future__ import annotations

from typing import Any

from genre_local.data.taxonomy import CATEGORIES, PROFILE_TOPICS, US_STATES
from genre_local.llm.parsing import PROFILE_MAX_REGIONS, PROFILE_MAX_TOPICS

SCHEMA_TITLE_MAX = 90
SCHEMA_ABSTRACT_MAX = 160


def _title() -> dict[str, Any]:
    return {"type": "string", "minLength": 8, "maxLength": SCHEMA_TITLE_MAX}


def summary_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"title": _title()},
        "required": ["title"],
        "additionalProperties": False,
    }


def profile_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "topics": {"type": "array", "items": {"enum": list(PROFILE_TOPICS)}, "minItems": 1, "maxItems": PROFILE_MAX_TOPICS},
            "regions": {"type": "array", "items": {"enum": list(US_STATES)}, "maxItems": PROFILE_MAX_REGIONS},
        },
        "required": ["topics", "regions"],
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
