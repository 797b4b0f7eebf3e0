"""GENRE's four generation schemes as data: one `GenerationTask` per scheme says which template,
which inputs, which slots, which schema, how many tokens and how the output is parsed.

The registry `TASKS` is looked up once, where a command names its tasks (`resolve_tasks`);
from there the task objects travel down, and the planner and runner stay generic over them.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from genre_local.data.taxonomy import CATEGORIES, PROFILE_TOPICS, US_STATES
from genre_local.errors import UserError
from genre_local.llm import parsing, schemas
from genre_local.llm.prompts import PromptTemplate, load_template, prompts_dir
from genre_local.store.datasets import NewsRow
from genre_local.store.generations import PROFILE_METHODS, Profile, profiles_up_to

# Cap per text line in prompts: one pathological title must not blow max_model_len.
MAX_LINE_CHARS = 200
MAX_ABSTRACT_CHARS = 600


METHODS = PROFILE_METHODS  # how the profiler answers; part of a generation source (store/generations.py)
# The profiler methods whose profiles aggregate a news task's per-news labels (llm/news_labels.py).
LABEL_METHODS = ("label", "label-score")


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
    # The labelling profiler: the labels of the user's clicked news (oldest first), which its
    # profile aggregates (llm/news_labels.py).
    labels: tuple[Any, ...] = ()
    # `label-score`: the prior every profile is calibrated by (llm/news_labels.ScorePrior).
    prior: Any = None

    @property
    def history_titles(self) -> tuple[str, ...]:
        return tuple(title for _, title in self.history)


@dataclass(frozen=True)
class GenerationTask:
    """One GENRE generation scheme. Everything the pipeline does differently per task is here."""

    name: str  # also the prompts/<prompt_set>/<name>.txt template and the `generations.task` value
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
    # (conn, dataset, up_to_round, model, prompt_set=...) -> {input_id: output}.
    read_latest: Callable[..., dict[str, Any]] | None = None
    # The prompt set (prompts/<prompt_set>/) this task object belongs to; see llm/prompt_sets.py.
    prompt_set: str = "compact"
    # Generators (uses_per_user): news items asked per request; None asks for all per_user in
    # one request, 1 sends per_user requests per user, each with its own index and seed.
    news_per_request: int | None = None
    # One news per request: per_user identical greedy requests would write the same news
    # per_user times, so a greedy setting (temperature 0) samples at this temperature instead.
    greedy_fallback_temperature: float | None = None
    # How the answer is made: "generate" decodes it; "score" (the profiler only) picks labels by
    # the model's likelihood (llm/topic_scoring.py), built per input by `scoring_for`
    # (input, template) -> ProfileScoring; "label" (the profiler only) aggregates the labels the
    # required `label` task wrote for the user's clicked news (llm/news_labels.py), its
    # `scoring_for` building a LabelAggregation; "label-score" as "label" from the required
    # `label_scores` task's scored labels, with a prior over every user's window (and that news
    # task itself, whose `scoring_for` builds a NewsTopicScoring). The method is part of the
    # fingerprint and the stored prompt version, so outputs of different methods never stand in
    # for each other.
    method: str = "generate"
    scoring_for: Callable[[TaskInput, PromptTemplate], Any] | None = None
    # The template file (prompts/<prompt_set>/<template_name>.txt) when it is not the task's
    # name: `label_scores` asks the labelling prompt but stores its outputs apart.
    template_name: str | None = None

    def __post_init__(self) -> None:
        if self.requires is not None and self.requires.read_latest is None:
            raise ValueError(f"task {self.name!r} requires {self.requires.name!r}, which has no read_latest")
        if self.requires is not None and self.requires.prompt_set != self.prompt_set:
            raise ValueError(f"task {self.name!r} of prompt set {self.prompt_set!r} requires a task of another set")
        if self.method not in METHODS:
            raise ValueError(f"task {self.name!r}: method {self.method!r} is not one of {', '.join(METHODS)}")
        if (self.method != "generate") != (self.scoring_for is not None):
            raise ValueError(f"task {self.name!r}: methods other than 'generate' need scoring_for, and only they")
        if self.aggregates_labels and (self.requires is None or self.requires.subject is not Subject.NEWS):
            raise ValueError(f"task {self.name!r}: method {self.method!r} requires a news-labelling task")

    @property
    def aggregates_labels(self) -> bool:
        """A profiler whose profiles aggregate the labels of the user's clicked news (no prompt)."""
        return self.method in LABEL_METHODS and self.subject is Subject.USER

    @property
    def reads_prior(self) -> bool:
        """A profiler whose profiles share a prior over a fixed set of news (every news in every
        user's window, whatever --limit): its required outputs are made for that whole set, and
        no profile is planned before all of them are stored (pipeline/plan.py)."""
        return self.aggregates_labels and self.method == "label-score"

    def template(self, folder: Path | None = None) -> PromptTemplate:
        """prompts/<prompt_set>/<name>.txt. The compact set's versions are the bare file hashes they
        were before prompt sets existed (so stores written then stay valid); every other set's
        version names the set, so each output's prompt_version says which set wrote it."""
        template = load_template(self.template_name or self.name, folder or prompts_dir() / self.prompt_set)
        if self.prompt_set == COMPACT_SET:
            return template
        return replace(template, version=f"{self.prompt_set}:{template.version}")

    @property
    def profile_method(self) -> str | None:
        """The method of the profiles this task's outputs are made from: the profiler's own, the
        chain's required profiler's; None for a task that reads no profile. Its outputs belong
        to the generation source of that method (migration 010)."""
        if self.name == "profile":
            return self.method
        if self.requires is not None and self.requires.name == "profile":
            return self.requires.method
        return None

    def requests_per_input(self, per_user: int) -> int:
        """Requests one input needs: per_user / news_per_request for generators, else 1."""
        if not self.uses_per_user or self.news_per_request is None:
            return 1
        return math.ceil(per_user / self.news_per_request)

    def items_per_request(self, per_user: int) -> int:
        """What a request's schema, token budget and parser are sized for (news items asked)."""
        if not self.uses_per_user or self.news_per_request is None:
            return per_user
        return min(per_user, self.news_per_request)

    def schema(self, per_user: int) -> dict[str, Any]:
        return self.schema_for(per_user)

    def max_tokens(self, per_user: int) -> int:
        return self.max_tokens_for(per_user)

    def slots(self, task_input: TaskInput, per_user: int) -> dict[str, str]:
        return self.render_slots(task_input, per_user)

    def parse(self, text: str, per_user: int, history_titles: Sequence[str] = ()) -> parsing.Parsed:
        return self.parse_text(text, per_user, tuple(history_titles))


COMPACT_SET = "compact"
PAPER_SET = "paper"


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


def numbered_profile_slots(history_titles: Sequence[str]) -> dict[str, str]:
    """The paper's profiler lists the browsed titles as (1) ... (n), oldest first."""
    return {
        "topics": ", ".join(PROFILE_TOPICS),
        "history": "\n".join(f"({number}) {_line(t)}" for number, t in enumerate(history_titles, start=1)),
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


def label_slots(title: str) -> dict[str, str]:
    return {"topics": ", ".join(PROFILE_TOPICS), "title": _line(title)}


def _label_slots(task_input: TaskInput, per_user: int) -> dict[str, str]:
    if task_input.news is None:
        raise ValueError(f"label input {task_input.input_id} carries no news item")
    return label_slots(task_input.news.title)


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


def _latest_labels(conn: Any, dataset: str, up_to_round: int, model: str | None = None,
                   prompt_set: str | None = None, method: str | None = None) -> dict[str, Any]:
    from genre_local.llm.news_labels import NewsLabel
    from genre_local.store.generations import news_labels_up_to

    return {nid: NewsLabel(topic, state)
            for nid, (topic, state, _) in news_labels_up_to(conn, dataset, up_to_round, model, prompt_set).items()}


def _latest_scored_labels(conn: Any, dataset: str, up_to_round: int, model: str | None = None,
                          prompt_set: str | None = None, method: str | None = None) -> dict[str, Any]:
    from genre_local.llm.news_labels import NewsLabel
    from genre_local.store.generations import news_labels_up_to

    rows = news_labels_up_to(conn, dataset, up_to_round, model, prompt_set, task=LABEL_SCORES_NAME)
    return {nid: NewsLabel(topic, state, tuple(scores)) for nid, (topic, state, scores) in rows.items() if scores}


# The labelling profiler's first step: one news item's topic and US state, chosen by decoding
# constrained to the allowed labels (no repetition penalty: the label repeats words of the
# prompt's list by design). Not a task of its own on the command line: the profiler made by
# `--profile-method label` requires it, so it runs for the news the profiled users clicked.
LABEL = GenerationTask(
    name="label",
    subject=Subject.NEWS,
    render_slots=_label_slots,
    schema_for=lambda per_user: schemas.label_schema(),
    max_tokens_for=lambda per_user: 32,
    parse_text=lambda text, per_user, titles: parsing.parse_label(text),
    read_latest=_latest_labels,
)


def _label_aggregation(task_input: TaskInput, template: PromptTemplate) -> Any:
    from genre_local.llm.news_labels import LabelAggregation

    return LabelAggregation(labels=tuple(task_input.labels), prior=task_input.prior)


# The profiler that aggregates its users' clicked news' labels (issue 9 part 6): same name and
# parser, its own fingerprints; it reads the clicked news only (the chain's generated news of an
# earlier round carry no label), in the same window of history as the set's profiler.
PROFILE_LABELED = replace(
    PROFILE, method="label", scoring_for=_label_aggregation, requires=LABEL, repetition_penalty=1.0,
    reads_chain_feedback=False,
)


def _news_topic_scoring(task_input: TaskInput, template: PromptTemplate) -> Any:
    from genre_local.llm.news_scoring import NewsTopicScoring

    return NewsTopicScoring(tuple(template.render(_label_slots(task_input, 1))))


LABEL_SCORES_NAME = "label_scores"
# `--profile-method label-score`'s first step (BENCHMARKS.md section 8c): the labelling prompt's
# label decoded exactly as LABEL decodes it (its state is used), plus the probability of every
# topic by the LLM's first-token likelihood after `{"topic": "` (llm/news_scoring.py), in one row
# per news (task `label_scores`, apart from `label`'s rows).
LABEL_SCORES = replace(
    LABEL, name=LABEL_SCORES_NAME, template_name=LABEL.name, method="label-score", scoring_for=_news_topic_scoring,
    parse_text=lambda text, per_user, titles: parsing.parse_scored_label(text), read_latest=_latest_scored_labels,
)
# Its profiler: topics by the soft counts of batch-calibrated scores, states by excess count
# (llm/news_labels.py); the planner gives each profile the prior of every user's window.
PROFILE_LABEL_SCORED = replace(PROFILE_LABELED, method="label-score", requires=LABEL_SCORES)

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


def resolve_tasks(spec: str, registry: dict[str, GenerationTask] | None = None,
                  profile_method: str = "generate") -> list[GenerationTask]:
    """The tasks a `--task` value names among `registry` (a prompt set's tasks; default the
    compact set's TASKS): one task, or `all` in GENRE's order; the profiler (and the chain's)
    made by `profile_method`."""
    registry = TASKS if registry is None else registry
    if spec == "all":
        return with_profile_method(list(registry.values()), profile_method)
    task = registry.get(spec)
    if task is None:
        raise UserError(f"--task {spec!r} is not known; use one of {', '.join(registry)} or all")
    return with_profile_method([task], profile_method)


# -- the paper's prompt set (prompts/paper/): GENRE's figures and the authors' request scripts ---
# The summarizer may expand the title (no fifteen-word cap): the schema bounds it at a sane
# PAPER_TITLE_SCHEMA_MAX characters, the validator a little above. The profiler keeps every
# topic and state the schema allows (each at most once after parsing) instead of 5 and 3. The
# generators write one news per request, as the authors' scripts did; the chain prompt gives
# the profiler's topics only (its template leaves out the regions slot).
PAPER_TITLE_SCHEMA_MAX = 200
PAPER_TITLE_MAX_CHARS = 240
# A profile naming every topic and every state: about 6 tokens a topic, 5 a state, plus braces.
_PAPER_PROFILE_MAX_TOKENS = 24 + 6 * len(PROFILE_TOPICS) + 5 * len(US_STATES)
# The authors sampled GPT-3.5 at the API's default temperature (1.0).
_PAPER_GENERATOR_TEMPERATURE = 1.0

PAPER_SUMMARIZE = replace(
    SUMMARIZE,
    prompt_set=PAPER_SET,
    schema_for=lambda per_user: schemas.summary_schema(PAPER_TITLE_SCHEMA_MAX),
    max_tokens_for=lambda per_user: PAPER_TITLE_SCHEMA_MAX + 12,
    parse_text=lambda text, per_user, titles: parsing.parse_summary(text, max_chars=PAPER_TITLE_MAX_CHARS),
)
PAPER_PROFILE = replace(
    PROFILE,
    prompt_set=PAPER_SET,
    render_slots=lambda task_input, per_user: numbered_profile_slots(task_input.history_titles),
    schema_for=lambda per_user: schemas.profile_schema(len(PROFILE_TOPICS), len(US_STATES)),
    max_tokens_for=lambda per_user: _PAPER_PROFILE_MAX_TOKENS,
    parse_text=lambda text, per_user, titles: parsing.parse_profile(text, len(PROFILE_TOPICS), len(US_STATES)),
)
PAPER_NEWS = replace(
    NEWS, prompt_set=PAPER_SET, news_per_request=1, greedy_fallback_temperature=_PAPER_GENERATOR_TEMPERATURE
)
PAPER_CHAIN = replace(
    CHAIN, prompt_set=PAPER_SET, news_per_request=1, greedy_fallback_temperature=_PAPER_GENERATOR_TEMPERATURE,
    requires=PAPER_PROFILE,
)
PAPER_TASKS: dict[str, GenerationTask] = {
    task.name: task for task in (PAPER_SUMMARIZE, PAPER_PROFILE, PAPER_NEWS, PAPER_CHAIN)
}
PAPER_PROFILE_SCORED = replace(PAPER_PROFILE, method="score", scoring_for=_profile_scoring, repetition_penalty=1.0)

# Each prompt set's profiler by method (generate | score | label | label-score). The labelling
# profilers are the compact set's only: the paper has no labelling prompt to follow.
PROFILERS: dict[str, dict[str, GenerationTask]] = {
    COMPACT_SET: {"generate": PROFILE, "score": PROFILE_SCORED, "label": PROFILE_LABELED,
                  "label-score": PROFILE_LABEL_SCORED},
    PAPER_SET: {"generate": PAPER_PROFILE, "score": PAPER_PROFILE_SCORED},
}
# Tasks other tasks require that a command never names (`--task`), by prompt set: looked up by
# name where planned rows travel (shard workers, llm/prompt_sets.py).
HELPER_TASKS: dict[str, dict[str, GenerationTask]] = {
    COMPACT_SET: {LABEL.name: LABEL, LABEL_SCORES.name: LABEL_SCORES}, PAPER_SET: {}}
PROFILE_METHODS = METHODS


def with_profile_method(tasks: Sequence[GenerationTask], method: str) -> list[GenerationTask]:
    """The tasks with their set's profiler made by `method` (generate | score | label | label-score), the
    chain's required profiler included, so the profiles the chain makes first are of the same kind."""
    if method not in PROFILE_METHODS:
        raise UserError(f"--profile-method {method!r} is not known; use {', '.join(PROFILE_METHODS)}")
    swapped = []
    for task in tasks:
        if method not in PROFILERS[task.prompt_set] and (task.name == PROFILE.name or task.requires is not None):
            raise UserError(f"--profile-method {method} has no prompt in the {task.prompt_set!r} prompt set; "
                            f"use --prompts {COMPACT_SET} or another --profile-method")
        if task.name == PROFILE.name:
            task = PROFILERS[task.prompt_set][method]
        elif task.requires is not None and task.requires.name == PROFILE.name:
            task = replace(task, requires=PROFILERS[task.prompt_set][method])
        swapped.append(task)
    return swapped
