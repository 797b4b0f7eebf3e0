"""Prompt sets: one folder of templates (prompts/<set>/) plus the settings that go with its
wording: how much of a user's history a prompt shows, how many news one request asks for, the
caps of the schemas and parsers (those live in the set's task objects, llm/tasks.py).

`compact` is the project's own set (short outputs a 135M model can follow); `paper` follows
GENRE's figures and the authors' request scripts. A set is resolved once, where a command
reads `--prompts` / `[generate] prompts`; its task objects travel down from there, and every
output records the set (`generations.prompt_set`, and the version of its template).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from genre_local.errors import UserError
from genre_local.llm.models import EMBEDDED_ALIAS
from genre_local.llm.prompts import prompts_dir
from genre_local.llm.tasks import COMPACT_SET, HELPER_TASKS, PAPER_SET, PAPER_TASKS, TASKS, GenerationTask, resolve_tasks


@dataclass(frozen=True)
class PromptSet:
    name: str
    description: str
    tasks: dict[str, GenerationTask]  # GENRE's order
    # False: a prompt shows the user's last [generate] history_items reads. True: the whole
    # history, the oldest reads dropped first only where the prompt would not fit the model's
    # context (max_model_len), since a truncated request fails as a whole.
    whole_history: bool

    @property
    def folder(self) -> Path:
        return prompts_dir() / self.name

    def resolve_tasks(self, spec: str, profile_method: str = "generate") -> list[GenerationTask]:
        return resolve_tasks(spec, self.tasks, profile_method)

    @property
    def helpers(self) -> dict[str, GenerationTask]:
        """Tasks that other tasks of the set require but no command names (the news labeller)."""
        return HELPER_TASKS[self.name]

    def task(self, name: str) -> GenerationTask:
        return self.tasks[name] if name in self.tasks else self.helpers[name]


COMPACT = PromptSet(
    name=COMPACT_SET,
    description="short outputs sized for small models: titles of about 15 words, at most 5 topics and "
    "3 states, the last history_items reads, all news of a user in one request, regions in the chain prompt",
    tasks=TASKS,
    whole_history=False,
)
PAPER = PromptSet(
    name=PAPER_SET,
    description="GENRE's prompts: an expanded clear, complete, neutral title; the whole history; "
    "every topic and state the schema allows; one news per request; topics only in the chain prompt",
    tasks=PAPER_TASKS,
    whole_history=True,
)
PROMPT_SETS: dict[str, PromptSet] = {s.name: s for s in (COMPACT, PAPER)}


def prompt_set_named(name: str, flag: str = "--prompts") -> PromptSet:
    """The set `name` names; a one-line user error naming `flag` otherwise."""
    found = PROMPT_SETS.get(name)
    if found is None:
        raise UserError(f"{flag} {name!r} is not a prompt set; use one of {', '.join(PROMPT_SETS)}")
    return found


def default_prompt_set(model: str) -> PromptSet:
    """The set a model gets when neither --prompts nor [generate] prompts names one.

    Decided by measurement (BENCHMARKS.md §6): on the embedded 135M model the paper set passes
    the parsers as often or more, but its one-news requests repeat a handful of titles across
    users and its profiles name most topics and states, so the embedded model keeps compact; any
    other model (a --model folder or a [models] alias, in practice a bigger one) gets the
    paper's prompts.
    """
    return COMPACT if model == EMBEDDED_ALIAS else PAPER


def resolve_prompt_set(wanted: str | None, model: str, flag: str = "--prompts") -> PromptSet:
    """--prompts / [generate] prompts when given, else the model's default."""
    return default_prompt_set(model) if wanted is None else prompt_set_named(wanted, flag)
