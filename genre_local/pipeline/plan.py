"""From store contents to the list of requests a task needs, each keyed by its fingerprint.

Public so the benchmarks can build exactly the requests the CLI would send and push them
through any backend without touching the store's generations.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import duckdb

from genre_local.llm.backend import GenRequest
from genre_local.llm.prompt_sets import prompt_set_named
from genre_local.llm.prompts import PromptTemplate
from genre_local.llm.tasks import GenerationTask, Subject, TaskInput
from genre_local.store import datasets, generations
from genre_local.store.generations import Profile


@dataclass(frozen=True)
class PlanSettings:
    dataset: str
    model_id: str
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    per_user: int = 2
    history_items: int = 20  # the prompt set shows at most this many reads (unless it shows the whole history)
    limit: int | None = None
    constrained: bool = True
    prompt_set: str = "compact"  # llm/prompt_sets.py; the tasks planned must belong to it
    context_tokens: int = 2048  # the engine's max_model_len: bounds a whole-history prompt


# A whole-history prompt keeps this many tokens of the context for the template's instructions
# and the chat markup, and counts a history character as at most a third of a token (English
# text runs about four characters a token): generous, because a prompt over max_model_len
# fails as a whole, while a few old reads less changes little.
_TEMPLATE_TOKENS = 600
_CHARS_PER_TOKEN = 3


@dataclass(frozen=True)
class WorkItem:
    task: GenerationTask
    input_id: str
    round: int
    fingerprint: str
    prompt_version: str
    sampling: str  # JSON of what the fingerprint saw besides task/input/model/prompt/round
    request: GenRequest
    history_titles: tuple[str, ...] = ()  # for the "does not copy the history" check
    per_request: int = 2  # news items the request asks for (what its output is parsed against)


def request_temperature(settings: PlanSettings, task: GenerationTask) -> float:
    """The configured temperature, except where a task sends one news per request: greedy
    decoding would write the same news in each of a user's requests, so it samples instead."""
    if settings.temperature == 0 and task.greedy_fallback_temperature is not None and task.requests_per_input(settings.per_user) > 1:
        return task.greedy_fallback_temperature
    return settings.temperature


def sampling_key(settings: PlanSettings, task: GenerationTask, request_index: int | None = None) -> dict[str, Any]:
    """Everything besides the prompt that changes what the model writes. `request_index`: which
    of an input's requests this is, for tasks that send several (one news per request); each
    gets its own seed."""
    key: dict[str, Any] = {
        "temperature": request_temperature(settings, task),
        "top_p": settings.top_p,
        "seed": settings.seed if request_index is None else settings.seed + request_index,
        "max_tokens": task.max_tokens(task.items_per_request(settings.per_user)),
        "constrained": settings.constrained,
        "repetition_penalty": task.repetition_penalty,
    }
    if task.uses_history_items:
        if prompt_set_named(task.prompt_set).whole_history:
            key["history_items"] = "all"
            key["context_tokens"] = settings.context_tokens
        else:
            key["history_items"] = settings.history_items
    if task.uses_per_user:
        key["per_user"] = settings.per_user
    if request_index is not None:
        key["news_index"] = request_index
    if task.method != "generate":
        # Only then: generated outputs keep the fingerprints they were stored under.
        key["method"] = task.method
    elif task.profile_method not in (None, "generate"):
        # The chain of scored or labelled profiles: its own fingerprints (and source, migration
        # 010), so it never stands in for the chain of generated ones.
        key["profile_method"] = task.profile_method
    return key


def prompt_version(task: GenerationTask, template: PromptTemplate) -> str:
    """The template's version, marked with the method when the answer is not generated."""
    return template.version if task.method == "generate" else f"{template.version}+{task.method}"


def fingerprint(
    dataset: str, task: str, input_id: str, model_id: str, prompt_version: str, sampling: dict[str, Any], round_: int
) -> str:
    payload = json.dumps(
        [dataset, task, input_id, model_id, prompt_version, sampling, round_], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def fit_history(lines: Sequence[tuple[str, str]], char_budget: int) -> tuple[tuple[str, str], ...]:
    """The newest (category, title) lines whose text fits `char_budget` characters, oldest
    first: a whole-history prompt drops the oldest reads only where the model's context
    could not hold them (the newest say most about what the user reads now)."""
    kept: list[tuple[str, str]] = []
    used = 0
    for category, title in reversed(lines):
        used += len(category) + len(title) + 8  # the line's markup: "(n) ", "- (", ") ", newline
        if used > char_budget:
            break
        kept.append((category, title))
    return tuple(reversed(kept))


def _limited(items: list[Any], limit: int | None) -> list[Any]:
    return items if limit is None else items[: max(0, limit)]


class Planner:
    """Reads a dataset's fixed inputs once (news, histories); plans any task and round from them
    plus the generations stored so far (read through the connection given to each call)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, settings: PlanSettings, templates: dict[str, PromptTemplate] | None = None):
        self.settings = settings
        self.prompt_set = prompt_set_named(settings.prompt_set)
        self.templates = templates or {name: task.template()
                                       for name, task in {**self.prompt_set.tasks, **self.prompt_set.helpers}.items()}
        self.news = datasets.read_news(conn, settings.dataset)
        self.news_by_id = {n.nid: n for n in self.news}
        self.users = datasets.read_histories(conn, settings.dataset)

    def task_users(self, task: GenerationTask) -> list[datasets.UserHistory]:
        """The users a USER task asks about: every user with history, or the cold ones only."""
        users = [u for u in self.users if u.cold] if task.cold_users_only else self.users
        return _limited(users, self.settings.limit)

    def _items(self, task: GenerationTask, round_: int, task_input: TaskInput) -> list[WorkItem]:
        """The input's requests: one, or one per news item for a set that asks for one at a time."""
        if task.prompt_set != self.prompt_set.name:
            raise ValueError(f"task {task.name!r} of prompt set {task.prompt_set!r} planned by a {self.prompt_set.name!r} planner")
        count = task.requests_per_input(self.settings.per_user)
        if count == 1:
            return [self._item(task, round_, task_input, None)]
        return [self._item(task, round_, task_input, index) for index in range(count)]

    def _item(self, task: GenerationTask, round_: int, task_input: TaskInput, request_index: int | None) -> WorkItem:
        s = self.settings
        template = self.templates[task.name]
        key = sampling_key(s, task, request_index)
        per_request = task.items_per_request(s.per_user)
        scoring = task.scoring_for(task_input, template) if task.scoring_for is not None else None
        if scoring is not None:
            key["scoring"] = scoring.key()
        if task.aggregates_labels:
            # No prompt reaches the engine: the version is the labelling prompt's (what the LLM
            # read), the stored prompt the labels the profile was aggregated from.
            template = self.templates[task.requires.name]
            messages = scoring.messages()
        else:
            messages = tuple(template.render(task.slots(task_input, per_request)))
        version = prompt_version(task, template)
        return WorkItem(
            task=task,
            input_id=task_input.input_id,
            round=round_,
            fingerprint=fingerprint(s.dataset, task.name, task_input.input_id, s.model_id, version, key, round_),
            prompt_version=version,
            sampling=json.dumps(key, sort_keys=True),
            request=GenRequest(
                messages=messages,
                max_tokens=task.max_tokens(per_request),
                # Unconstrained (--no-constrained, benchmark (d)): no schema reaches the engine.
                schema=task.schema(per_request) if s.constrained else None,
                temperature=key["temperature"],
                top_p=s.top_p,
                seed=key["seed"],
                repetition_penalty=task.repetition_penalty,
                scoring=scoring,
            ),
            history_titles=task_input.history_titles,
            per_request=per_request,
        )

    def _history(self, task: GenerationTask, user: datasets.UserHistory, titles: dict[str, str],
                 extra: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        """(category, title) of the user's reads, enhanced titles where a previous round wrote
        them, then any news the chain generated for them last round: the last history_items
        of them, or (a whole-history set) all that fit the context."""
        lines = []
        for nid in user.history:
            news = self.news_by_id.get(nid)
            if news is not None:
                lines.append((news.category, titles.get(nid, news.title)))
        lines.extend(extra)
        if self.prompt_set.whole_history:
            return fit_history(lines, self.history_char_budget(task))
        return tuple(lines[-self.settings.history_items :] if self.settings.history_items > 0 else lines)

    def label_window(self, user: datasets.UserHistory) -> tuple[str, ...]:
        """The clicked news a labelling profiler reads: the same reads the set's profiler prompt
        shows (the last history_items, or all for a whole-history set), oldest first."""
        if self.prompt_set.whole_history or self.settings.history_items <= 0:
            return user.history
        return user.history[-self.settings.history_items :]

    def clicked_news(self, user_ids: set[str]) -> list[str]:
        """The nids in these users' label windows, each once, in first-click order."""
        seen: dict[str, None] = {}
        for user in self.users:
            if user.user_id in user_ids:
                seen.update(dict.fromkeys(self.label_window(user)))
        return list(seen)

    def prior_users(self) -> set[str]:
        """Whose windows make a `label-score` prior's set: every user with history, whatever
        --limit, chunk or resume (so the prior, and each profile, is the same whichever users
        a run asks for)."""
        return {u.user_id for u in self.users if u.history}

    def prior_news(self) -> list[str]:
        """The prior's set: every news in those users' windows that the dataset holds, each once."""
        return [nid for nid in self.clicked_news(self.prior_users()) if nid in self.news_by_id]

    def missing_prior_news(self, conn: duckdb.DuckDBPyConnection, task: GenerationTask, round_: int) -> list[str]:
        """The news of the prior's set without a valid scored label yet ([] for a task without a prior)."""
        if not task.reads_prior:
            return []
        required = self._required_outputs(conn, task, round_) or {}
        return [nid for nid in self.prior_news() if nid not in required]

    def history_char_budget(self, task: GenerationTask) -> int:
        """Characters of history lines a whole-history prompt of `task` may hold."""
        answer = task.max_tokens(task.items_per_request(self.settings.per_user))
        return max(0, self.settings.context_tokens - answer - _TEMPLATE_TOKENS) * _CHARS_PER_TOKEN

    def plan(self, conn: duckdb.DuckDBPyConnection, task: GenerationTask, round_: int, only_users: set[str] | None = None) -> list[WorkItem]:
        """Every request of `task` in `round_`; `only_users` (a USER task's user ids) replaces
        the task's own user selection and limit."""
        dataset = self.settings.dataset
        titles = generations.enhanced_titles_before(conn, dataset, round_, self.settings.model_id, self.settings.prompt_set)
        if task.subject is Subject.NEWS:
            # `only_users` given: the news those users clicked (what a labelling profiler needs).
            news = (_limited(self.news, self.settings.limit) if only_users is None
                    else [self.news_by_id[nid] for nid in self.clicked_news(only_users) if nid in self.news_by_id])
            return [
                item
                for n in news
                for item in self._items(task, round_, TaskInput(n.nid, news=replace(n, title=titles.get(n.nid, n.title))))
            ]
        # The chain's news of last round, of the chain made from profiles of this task's method.
        feedback = (generations.chain_items(conn, dataset, round_ - 1, self.settings.model_id, self.settings.prompt_set,
                                            task.profile_method or "generate")
                    if task.reads_chain_feedback and round_ > 1 else {})
        required = self._required_outputs(conn, task, round_)
        users = self.task_users(task) if only_users is None else [u for u in self.users if u.user_id in only_users]
        prior = None
        if task.reads_prior:
            from genre_local.llm.news_labels import score_prior

            # No profile before every news of the prior's set is scored: a prior over part of
            # it would depend on what this run happened to ask (the runner says so).
            news = self.prior_news()
            if not news or any(nid not in (required or {}) for nid in news):
                return []
            prior = score_prior({nid: required[nid] for nid in news})
        items = []
        for user in users:
            if task.aggregates_labels:
                # Users none of whose clicked news has a valid label are left out.
                labels = tuple(required[nid] for nid in self.label_window(user) if nid in (required or {}))
                if labels:
                    items.extend(self._items(task, round_, TaskInput(user.user_id, labels=labels, prior=prior)))
                continue
            profile = None
            if required is not None:
                profile = required.get(user.user_id)
                if profile is None:
                    continue  # the runner makes the missing ones first
            history = self._history(task, user, titles, feedback.get(user.user_id, []))
            items.extend(self._items(task, round_, TaskInput(user.user_id, history=history, profile=profile)))
        return items

    def preview(self, task: GenerationTask) -> list[WorkItem]:
        """For --dry-run before the outputs a task requires exist: its first prompt with a
        stand-in for them (the chain: the profiler's topics)."""
        users = self.task_users(task)
        if not users:
            return []
        history = self._history(task, users[0], {}, [])
        stand_in = Profile(["(topics from the profiler)"], [])
        return self._items(task, 1, TaskInput(users[0].user_id, history=history, profile=stand_in))

    def _required_outputs(self, conn: duckdb.DuckDBPyConnection, task: GenerationTask, round_: int) -> dict[str, Any] | None:
        """The latest outputs of the task `task` requires, per input id; None when it requires none."""
        if task.requires is None or task.requires.read_latest is None:
            return None
        # Of the method the required task is made by: the chain of a scored profiler reads scored profiles.
        return task.requires.read_latest(conn, self.settings.dataset, round_, self.settings.model_id,
                                         prompt_set=self.settings.prompt_set, method=task.requires.method)

    def users_missing_required(self, conn: duckdb.DuckDBPyConnection, task: GenerationTask, round_: int) -> set[str]:
        """The task's users that lack the outputs it requires (the chain: a profile)."""
        required = self._required_outputs(conn, task, round_)
        if required is None:
            return set()
        if task.reads_prior and any(nid not in required for nid in self.prior_news()):
            # Every user waits for the prior's whole set.
            return {u.user_id for u in self.task_users(task)}
        if task.requires is not None and task.requires.subject is Subject.NEWS:
            # The labelling profiler: users with a clicked news not labelled yet.
            return {u.user_id for u in self.task_users(task) if any(n not in required for n in self.label_window(u))}
        return {u.user_id for u in self.task_users(task) if u.user_id not in required}
