"""GENRE's four generation schemes as data: one `GenerationTask` per scheme says which template,
which inputs, which slots, which schema, how many tokens and how the output is parsed.

The registry `TASKS` is looked up once, where a command names its tasks (`resolve_tasks`);
from there the task objects travel down, and the planner and runner stay generic over them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from genre_local.data.taxonomy import CATEGORIES, PROFILE_TOPICS
from genre_local.errors import UserError
from genre_local.llm import parsing, schemas
from genre_local.llm.prompts import PromptTemplate, load_template
from genre_local.store.datasets import NewsRow
from genre_local.store.generations import Profile, profiles_up_to

# Cap per text line in prompts: one pathological title must not blow max_model_len.
MAX_LINE_CHARS = 200
MAX_ABSTRACT_CHARS = 600


METHODS = ("generate", "score")


class Subject(enum.Enum):
    """What one request of a task is about."""

    NEWS = "news"  # one news item (input id: nid)
    USER = "user"  # one user with history (input id: user_id)


@dataclass(frozen=True)
class TaskInput:
    """Everything one request's prompt is rendered from; which fields are set depends on the
    task's subject (news for NEWS, history and maybe profile for USER)."""

    input_id: str
    news: NewsRow | None = None  # title: the enhanced one of an earlier round, if any
    history: tuple[tuple[str, str], ...] = ()  # (category, title), oldest first
    profile: Profile | None = None  # the required task's output (the chain reads the profile)

    @property
    def history_titles(self) -> tuple[str, ...]:
        return tuple(title for _, title in self.history)


@dataclass(frozen=True)
class GenerationTask:
    """One GENRE generation scheme. Everything the pipeline does differently per task is here."""

    name: str  # also the prompts/<name>.txt template and the `generations.task` value
    subject: Subject
    render_slots: Callable[[TaskInput, int], dict[str, str]]  # (input, per_user) -> template slots
    schema_for: Callable[[int], dict[str, Any]]  # per_user -> JSON schema
    max_tokens_for: Callable[[int], int]  # per_user -> max generated tokens
    parse_text: Callable[[str, int, tuple[str, ...]], parsing.Parsed]  # (text, per_user, history titles)
    repetition_penalty: float = 1.0
    cold_users_only: bool = False  # USER tasks: only new users (1..NEW_USER_MAX_HISTORY items)
    # USER tasks: the news the chain generated for the user last round joins the history.
    reads_chain_feedback: bool = False
    # Outputs of another task an input needs first (the chain reads the user's profile); the
    # runner makes the missing ones before this task, inputs without one are left out.
    requires: GenerationTask | None = None
    # The task's sampling key carries these settings (they change what the model writes).
    uses_history_items: bool = False
    uses_per_user: bool = False
    scored_against_truth: bool = False  # outputs are profiles, scored on synthetic data
    # For a task others require: its latest valid output per input up to a round, as the
    # requiring task's inputs carry it (conn, dataset, up_to_round, model) -> {input_id: output}.
    read_latest: Callable[[Any, str, int, str | None], dict[str, Any]] | None = None
    # How the answer is made: "generate" decodes it; "score" (the profiler only) picks labels by
    # the model's likelihood (llm/topic_scoring.py), built per input by `scoring_for`
    # (input, template) -> ProfileScoring. The method is part of the fingerprint and the
    # stored prompt version, so scored and generated outputs never stand in for each other.
    method: str = "generate"
    scoring_for: Callable[[TaskInput, PromptTemplate], Any] | None = None

    def __post_init__(self) -> None:
        if self.requires is not None and self.requires.read_latest is None:
            raise ValueError(f"task {self.name!r} requires {self.requires.name!r}, which has no read_latest")
        if self.method not in METHODS:
            raise ValueError(f"task {self.name!r}: method {self.method!r} is not one of {', '.join(METHODS)}")
        if (self.method == "score") != (self.scoring_for is not None):
            raise ValueError(f"task {self.name!r}: method 'score' needs scoring_for, and only it")

    def template(self, folder: Path | None = None) -> PromptTemplate:
        return load_template(self.name, folder)

    def schema(self, per_user: int) -> dict[str, Any]:
        return self.schema_for(per_user)

    def max_tokens(self, per_user: int) -> int:
        return self.max_tokens_for(per_user)

    def slots(self, task_input: TaskInput, per_user: int) -> dict[str, str]:
        return self.render_slots(task_input, per_user)

    def parse(self, text: str, per_user: int, history_titles: Sequence[str] = ()) -> parsing.Parsed:
        return self.parse_text(text, per_user, tuple(history_titles))


def _line(text: str, limit: int = MAX_LINE_CHARS) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# -- slots (plain text; the template never re-parses it) -------------------------------------------


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


def _summarize_slots(task_input: TaskInput, per_user: int) -> dict[str, str]:
    news = task_input.news
    if news is None:
        raise ValueError(f"summarize input {task_input.input_id} carries no news item")
    return summary_slots(news.title, news.abstract, news.category, news.subcategory)


def _chain_slots(task_input: TaskInput, per_user: int) -> dict[str, str]:
    profile = task_input.profile or Profile([], [])
    return chain_slots(task_input.history, per_user, profile.topics, profile.regions)


# -- output length ---------------------------------------------------------------------------------
# The longest output the schema allows even at one character a token (SmolLM2 splits digits one
# by one, so "(2022) (2022) ..." is legal and that long): a lower cap truncates such
# degenerate-but-legal outputs into invalid JSON. Only generated tokens cost time, so the
# headroom is free for normal outputs.


def _news_max_tokens(per_user: int) -> int:
    return 16 + (schemas.SCHEMA_TITLE_MAX + schemas.SCHEMA_ABSTRACT_MAX + 24) * per_user


# Repetition penalty, measured on the embedded model (24 news/chain requests, greedy): 1.0 left
# 16 invalid (history headlines copied, one title repeated across items), 1.1 left 2; higher
# values start to break JSON closings. Summaries should reuse the article's words: no penalty.
_GENERATOR_PENALTY = 1.1

SUMMARIZE = GenerationTask(
    name="summarize",
    subject=Subject.NEWS,
    render_slots=_summarize_slots,
    schema_for=lambda per_user: schemas.summary_schema(),
    max_tokens_for=lambda per_user: schemas.SCHEMA_TITLE_MAX + 12,
    parse_text=lambda text, per_user, titles: parsing.parse_summary(text),
)
PROFILE = GenerationTask(
    name="profile",
    subject=Subject.USER,
    render_slots=lambda task_input, per_user: profile_slots(task_input.history_titles),
    schema_for=lambda per_user: schemas.profile_schema(),
    max_tokens_for=lambda per_user: 64,
    parse_text=lambda text, per_user, titles: parsing.parse_profile(text),
    repetition_penalty=_GENERATOR_PENALTY,
    reads_chain_feedback=True,
    uses_history_items=True,
    scored_against_truth=True,
    read_latest=profiles_up_to,
)
def _profile_scoring(task_input: TaskInput, template: PromptTemplate) -> Any:
    from genre_local.llm.topic_scoring import ProfileScoring

    # The content-free input of contextual calibration: the same prompt, no headline at all.
    return ProfileScoring(calibration_messages=tuple(template.render(profile_slots(()))))


# The profiler that scores every allowed topic and state by the model's likelihood instead of
# letting it write (issue 9 part 6): same name, template and parser, its own fingerprints.
PROFILE_SCORED = replace(PROFILE, method="score", scoring_for=_profile_scoring, repetition_penalty=1.0)

NEWS = GenerationTask(
    name="news",
    subject=Subject.USER,
    render_slots=lambda task_input, per_user: news_slots(task_input.history, per_user),
    schema_for=schemas.news_schema,
    max_tokens_for=_news_max_tokens,
    parse_text=parsing.parse_news,
    repetition_penalty=_GENERATOR_PENALTY,
    cold_users_only=True,
    uses_history_items=True,
    uses_per_user=True,
)
CHAIN = GenerationTask(
    name="chain",
    subject=Subject.USER,
    render_slots=_chain_slots,
    schema_for=schemas.news_schema,
    max_tokens_for=_news_max_tokens,
    parse_text=parsing.parse_news,
    repetition_penalty=_GENERATOR_PENALTY,
    cold_users_only=True,
    reads_chain_feedback=True,
    requires=PROFILE,
    uses_history_items=True,
    uses_per_user=True,
)

# GENRE's order, which `all` runs: the chain reads profiles, so profile comes before it.
TASKS: dict[str, GenerationTask] = {task.name: task for task in (SUMMARIZE, PROFILE, NEWS, CHAIN)}


PROFILE_METHODS = {"generate": PROFILE, "score": PROFILE_SCORED}


def with_profile_method(tasks: Sequence[GenerationTask], method: str) -> list[GenerationTask]:
    """The tasks with the profiler made by `method` (generate | score), the chain's required
    profiler included, so the profiles the chain makes first are of the same kind."""
    profiler = PROFILE_METHODS.get(method)
    if profiler is None:
        raise UserError(f"--profile-method {method!r} is not known; use {' or '.join(PROFILE_METHODS)}")
    swapped = []
    for task in tasks:
        if task.name == PROFILE.name:
            task = profiler
        elif task.requires is not None and task.requires.name == PROFILE.name:
            task = replace(task, requires=profiler)
        swapped.append(task)
    return swapped


def resolve_tasks(spec: str, profile_method: str = "generate") -> list[GenerationTask]:
    """The tasks a `--task` value names: one task, or `all` in GENRE's order; the profiler
    (and the chain's) made by `profile_method`."""
    if spec == "all":
        return with_profile_method(list(TASKS.values()), profile_method)
    task = TASKS.get(spec)
    if task is None:
        raise UserError(f"--task {spec!r} is not known; use one of {', '.join(TASKS)} or all")
    return with_profile_method([task], profile_method)
