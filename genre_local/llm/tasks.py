"""GENRE's four generation schemes as data: which template, which slots, which schema, how many
tokens, how the output is parsed. The pipeline stays generic over these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from genre_local.data.taxonomy import CATEGORIES, PROFILE_TOPICS
from genre_local.errors import UserError
from genre_local.llm import parsing, schemas

TASKS: tuple[str, ...] = ("summarize", "profile", "news", "chain")
# Cap per text line in prompts: one pathological title must not blow max_model_len.
MAX_LINE_CHARS = 200
MAX_ABSTRACT_CHARS = 600


def check_task(task: str) -> str:
    if task not in TASKS:
        raise UserError(f"--task {task!r} is not known; use one of {', '.join(TASKS)} or all")
    return task


def expand_tasks(task: str) -> list[str]:
    """`all` runs every task in GENRE's order (chain needs profiles, so profile comes first)."""
    return list(TASKS) if task == "all" else [check_task(task)]


def _line(text: str, limit: int = MAX_LINE_CHARS) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def max_tokens(task: str, per_user: int) -> int:
    """The longest output the schema allows even at one character a token (SmolLM2 splits
    digits one by one, so "(2022) (2022) ..." is legal and that long): a lower cap truncates such
    degenerate-but-legal outputs into invalid JSON. Only generated tokens cost time, so the
    headroom is free for normal outputs."""
    if task == "summarize":
        return schemas.SCHEMA_TITLE_MAX + 12
    if task == "profile":
        return 64
    return 16 + (schemas.SCHEMA_TITLE_MAX + schemas.SCHEMA_ABSTRACT_MAX + 24) * per_user


def repetition_penalty(task: str) -> float:
    """Measured on the embedded model (24 news/chain requests, greedy): 1.0 left 16 invalid
    (history headlines copied, one title repeated across items), 1.1 left 2; higher values
    start to break JSON closings. Summaries should reuse the article's words: no penalty."""
    return 1.0 if task == "summarize" else 1.1


def schema(task: str, per_user: int) -> dict[str, Any]:
    if task == "summarize":
        return schemas.summary_schema()
    if task == "profile":
        return schemas.profile_schema()
    return schemas.news_schema(per_user)


def parse_output(task: str, text: str, per_user: int, history_titles: Sequence[str] = ()) -> parsing.Parsed:
    if task == "summarize":
        return parsing.parse_summary(text)
    if task == "profile":
        return parsing.parse_profile(text)
    return parsing.parse_news(text, per_user, tuple(history_titles))


def summary_slots(title: str, abstract: str, category: str, subcategory: str) -> dict[str, str]:
    return {
        "title": _line(title),
        "abstract": _line(abstract, MAX_ABSTRACT_CHARS) or "(none)",
        "category": _line(category) or "(none)",
        "subcategory": _line(subcategory) or "(none)",
    }


def profile_slots(history_titles: Sequence[str]) -> dict[str, str]:
    return {
        "topics": ", ".join(PROFILE_TOPICS),
        "history": "\n".join(f"- {_line(t)}" for t in history_titles),
    }


def news_slots(history: Sequence[tuple[str, str]], per_user: int) -> dict[str, str]:
    """history: (category, title) pairs, oldest first."""
    return {
        "categories": ", ".join(CATEGORIES),
        "k": str(per_user),
        "history": "\n".join(f"- ({_line(c)}) {_line(t)}" for c, t in history),
    }


def chain_slots(
    history: Sequence[tuple[str, str]], per_user: int, topics: Sequence[str], regions: Sequence[str]
) -> dict[str, str]:
    slots = news_slots(history, per_user)
    slots["interests"] = ", ".join(topics) or "(none found)"
    slots["regions"] = ", ".join(regions) or "(none)"
    return slots
