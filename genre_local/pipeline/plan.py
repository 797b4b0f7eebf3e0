"""From store contents to the list of requests a task needs, each keyed by its fingerprint.

Public so the benchmarks can build exactly the requests the CLI would send and push them
through any backend without touching the store's generations.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from genre_local.llm import tasks
from genre_local.llm.backend import GenRequest
from genre_local.llm.prompts import PromptTemplate, load_template
from genre_local.pipeline import inputs


@dataclass(frozen=True)
class PlanSettings:
    dataset: str
    model_id: str
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    per_user: int = 2
    history_items: int = 20
    limit: int | None = None
    constrained: bool = True


@dataclass(frozen=True)
class WorkItem:
    task: str
    input_id: str
    round: int
    fingerprint: str
    prompt_version: str
    sampling: str  # JSON of what the fingerprint saw besides task/input/model/prompt/round
    request: GenRequest
    history_titles: tuple[str, ...] = ()  # for the "does not copy the history" check


def sampling_key(settings: PlanSettings, task: str) -> dict[str, Any]:
    """Everything besides the prompt that changes what the model writes."""
    key: dict[str, Any] = {
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "seed": settings.seed,
        "max_tokens": tasks.max_tokens(task, settings.per_user),
        "constrained": settings.constrained,
        "repetition_penalty": tasks.repetition_penalty(task),
    }
    if task != "summarize":
        key["history_items"] = settings.history_items
    if task in ("news", "chain"):
        key["per_user"] = settings.per_user
    return key


def fingerprint(
    dataset: str, task: str, input_id: str, model_id: str, prompt_version: str, sampling: dict[str, Any], round_: int
) -> str:
    payload = json.dumps(
        [dataset, task, input_id, model_id, prompt_version, sampling, round_], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _limited(items: list[Any], limit: int | None) -> list[Any]:
    return items if limit is None else items[: max(0, limit)]


class Planner:
    """Reads a dataset's fixed inputs once (news, histories); plans any task and round from them
    plus the generations stored so far (read through the connection given to each call)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, settings: PlanSettings, templates: dict[str, PromptTemplate] | None = None):
        self.settings = settings
        self.templates = templates or {name: load_template(name) for name in tasks.TASKS}
        self.news = inputs.load_news(conn, settings.dataset)
        self.news_by_id = {n.nid: n for n in self.news}
        self.users = inputs.load_histories(conn, settings.dataset)

    def task_users(self, task: str) -> list[inputs.UserHistory]:
        """Profiles for every user with history; generated news for cold users only."""
        users = self.users if task == "profile" else [u for u in self.users if u.cold]
        return _limited(users, self.settings.limit)

    def _item(self, task: str, input_id: str, round_: int, slots: dict[str, str], history_titles: Sequence[str] = ()) -> WorkItem:
        s = self.settings
        template = self.templates[task]
        key = sampling_key(s, task)
        return WorkItem(
            task=task,
            input_id=input_id,
            round=round_,
            fingerprint=fingerprint(s.dataset, task, input_id, s.model_id, template.version, key, round_),
            prompt_version=template.version,
            sampling=json.dumps(key, sort_keys=True),
            request=GenRequest(
                messages=tuple(template.render(slots)),
                max_tokens=tasks.max_tokens(task, s.per_user),
                schema=tasks.schema(task, s.per_user),
                temperature=s.temperature,
                top_p=s.top_p,
                seed=s.seed,
                repetition_penalty=tasks.repetition_penalty(task),
            ),
            history_titles=tuple(history_titles),
        )

    def _history(self, user: inputs.UserHistory, titles: dict[str, str], extra: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """(category, title) of the user's last history_items reads, enhanced titles where a
        previous round wrote them, then any news the chain generated for them last round."""
        lines = []
        for nid in user.history:
            news = self.news_by_id.get(nid)
            if news is not None:
                lines.append((news.category, titles.get(nid, news.title)))
        lines.extend(extra)
        return lines[-self.settings.history_items :] if self.settings.history_items > 0 else lines

    def plan(self, conn: duckdb.DuckDBPyConnection, task: str, round_: int, only_users: set[str] | None = None) -> list[WorkItem]:
        titles = inputs.load_enhanced_titles(conn, self.settings.dataset, round_)
        if task == "summarize":
            return [
                self._item(task, n.nid, round_, tasks.summary_slots(titles.get(n.nid, n.title), n.abstract, n.category, n.subcategory))
                for n in _limited(self.news, self.settings.limit)
            ]
        feedback = inputs.load_chain_items(conn, self.settings.dataset, round_ - 1) if round_ > 1 else {}
        if task == "profile":
            users = self.task_users(task) if only_users is None else [u for u in self.users if u.user_id in only_users]
            items = []
            for user in users:
                history = self._history(user, titles, feedback.get(user.user_id, []))
                items.append(self._item(task, user.user_id, round_, tasks.profile_slots([t for _, t in history])))
            return items
        if task == "news":
            items = []
            for user in self.task_users(task):
                history = self._history(user, titles, [])
                items.append(self._item(task, user.user_id, round_, tasks.news_slots(history, self.settings.per_user), [t for _, t in history]))
            return items
        # chain: the profiler's topics go into the generator's prompt
        profiles = inputs.load_profiles(conn, self.settings.dataset, round_)
        items = []
        for user in self.task_users(task):
            if user.user_id not in profiles:
                continue
            topics, regions = profiles[user.user_id]
            history = self._history(user, titles, feedback.get(user.user_id, []))
            slots = tasks.chain_slots(history, self.settings.per_user, topics, regions)
            items.append(self._item(task, user.user_id, round_, slots, [t for _, t in history]))
        return items

    def chain_preview(self) -> list[WorkItem]:
        """For --dry-run before any profile exists: the first chain prompt with a stand-in
        for the profiler's topics."""
        users = self.task_users("chain")
        if not users:
            return []
        history = self._history(users[0], {}, [])
        slots = tasks.chain_slots(history, self.settings.per_user, ["(topics from the profiler)"], [])
        return [self._item("chain", users[0].user_id, 1, slots, [t for _, t in history])]

    def users_missing_profiles(self, conn: duckdb.DuckDBPyConnection, round_: int) -> set[str]:
        profiles = inputs.load_profiles(conn, self.settings.dataset, round_)
        return {u.user_id for u in self.task_users("chain") if u.user_id not in profiles}
