"""Running generation tasks: plan, skip what is stored valid, batch through one engine,
parse and retry, write each batch in one transaction, record the run's cost.

The store is opened only for short reads and writes, never across an engine call, so other
commands can use it while a long generation runs; once work has begun, an open that finds the
store locked by another command (a `report` or `generations list` reading it) waits for it
rather than throwing away the engine's batch. A killed run loses at most the batch in flight:
a batch's rows land together or not at all, keyed by fingerprint (INSERT OR REPLACE), so a
rerun neither repeats stored work nor stores a key twice.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from genre_local.errors import UserError
from genre_local.llm.backend import Backend, GenRequest
from genre_local.llm.news_labels import needs_engine
from genre_local.llm.tasks import GenerationTask
from genre_local.llm.topic_scoring import complete
from genre_local.pipeline.cost import generation_cost
from genre_local.pipeline.fidelity import Fidelity, profile_fidelity
from genre_local.pipeline.plan import PlanSettings, Planner, WorkItem
from genre_local.store import datasets, generations
from genre_local.store.connection import Store, now_utc, open_store
from genre_local.store.generations import DEFAULT_METHOD, FidelityRecord, GenerationRecord, GenerationRunRecord
from genre_local.store.runs import open_store_waiting

# Greedy decoding would repeat an invalid answer word for word; retries sample instead,
# hotter each time (small models often repeat one title across items at low temperature).
RETRY_TEMPERATURES = (0.7, 1.0)
# How long a running generation waits for another command's lock on the store (as training does).
STORE_WAIT_S = 120.0


def open_store_mid_run(db_path: Path) -> Store:
    """The store, once a generation has begun: waits out another command's lock (see the module
    docstring) instead of throwing away the engine's batch."""
    return open_store_waiting(db_path, wait_s=STORE_WAIT_S, poll_s=0.5)

@dataclass(frozen=True)
class RunSettings:
    plan: PlanSettings
    backend: str
    retries: int = 2
    batch_size: int = 256
    rounds: int = 1
    price_per_hour: float | None = None  # None or 0: no money figures


@dataclass
class TaskStats:
    task: str
    round: int
    requests: int = 0
    new: int = 0
    skipped: int = 0
    valid: int = 0
    invalid: int = 0
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    engine_seconds: float = 0.0
    startup_seconds: float = 0.0
    wall_seconds: float = 0.0
    # The dtype the engine computed in (Backend.dtype); None while no engine ran for the task.
    dtype: str | None = None
    fidelity: Fidelity | None = None
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def outside_seconds(self) -> float:
        """Wall time spent on planning, parsing and store writes rather than in the engine."""
        return max(0.0, self.wall_seconds - self.engine_seconds)

    def as_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "round": self.round,
            "requested": self.requests,
            "new": self.new,
            "skipped": self.skipped,
            "valid": self.valid,
            "invalid": self.invalid,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.wall_seconds + self.startup_seconds, 3),
            "engine_seconds": round(self.engine_seconds, 3),
            "startup_seconds": round(self.startup_seconds, 3),
            "outside_seconds": round(self.outside_seconds, 3),
            "dtype": self.dtype,
            "fidelity": (
                {**asdict(self.fidelity), "ratio_to_chance": asdict(self.fidelity.ratio_to_chance())} if self.fidelity else None
            ),
        }


class LazyEngine:
    """Starts the backend on first use only, so a rerun with nothing to do never loads a model."""

    def __init__(self, factory: Callable[[], Backend]):
        self._factory = factory
        self._backend: Backend | None = None

    @property
    def started(self) -> bool:
        return self._backend is not None

    def get(self) -> tuple[Backend, float]:
        """The backend and the seconds this call spent starting it (0 once it runs)."""
        if self._backend is not None:
            return self._backend, 0.0
        start = time.perf_counter()
        self._backend = self._factory()
        return self._backend, time.perf_counter() - start

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def new_run_id() -> str:
    return f"{now_utc():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


@dataclass
class Outcome:
    """One request's result after its last attempt: what outcome_records stores (the in-process
    loop and the Ray pipeline's parse step both build these)."""

    item: WorkItem
    text: str = ""
    messages: tuple[dict[str, str], ...] = ()  # the conversation of the last attempt
    parsed: dict[str, Any] | None = None
    error: str | None = "not generated"
    attempt: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0


def repair_request(request: GenRequest, failed: Outcome, attempt: int) -> GenRequest:
    """A retry: the user message gains a note on why the last answer was rejected, and decoding
    samples (hotter each time) with a new seed, since greedy decoding would say it again.

    The rejected answer itself stays out of the conversation: a small model shown its own
    answer copies it verbatim. The note joins the last user turn, not a new one, because some
    chat templates insist that user and assistant turns alternate.
    """
    note = (
        f"\n\nA previous answer was rejected ({failed.error}). Follow the instructions exactly: "
        "one complete JSON object, new stories rather than the headlines listed."
    )
    messages = list(request.messages)
    messages[-1] = {**messages[-1], "content": messages[-1]["content"] + note}
    temperature = RETRY_TEMPERATURES[min(attempt - 2, len(RETRY_TEMPERATURES) - 1)]
    return replace(
        request,
        messages=tuple(messages),
        temperature=max(request.temperature, temperature),
        seed=request.seed + 7919 * attempt,
    )


def complete_batch(
    backend: Backend | None, items: Sequence[WorkItem], retries: int
) -> tuple[list[Outcome], float, int]:
    """Generate, parse, and retry the invalid ones (sampling, new seed) up to `retries` times.

    Returns the outcomes, the seconds spent inside the engine, and the engine requests made.
    Each request is charged its share of its engine call's time as latency.
    """
    outcomes = [Outcome(item) for item in items]
    pending = list(range(len(items)))
    engine_seconds = 0.0
    requests_made = 0
    for attempt in range(1, retries + 2):
        if not pending:
            break
        batch = [
            items[index].request if attempt == 1 else repair_request(items[index].request, outcomes[index], attempt)
            for index in pending
        ]
        start = time.perf_counter()
        results = complete(backend, batch)  # scored profiles are not generated (topic_scoring)
        spent = time.perf_counter() - start
        engine_seconds += spent
        requests_made += len(batch)
        still = []
        for index, request, result in zip(pending, batch, results):
            outcome = outcomes[index]
            # Parsed against what this request asked for (one news of a one-news-per-request set).
            parsed = outcome.item.task.parse(result.text, outcome.item.per_request, outcome.item.history_titles)
            if parsed.valid is False and result.finish_reason == "length":
                parsed = replace(parsed, error=f"{parsed.error} (hit max_tokens)")
            outcome.text = result.text
            outcome.messages = request.messages
            outcome.parsed = parsed.value
            outcome.error = parsed.error
            outcome.attempt = attempt
            outcome.prompt_tokens += result.prompt_tokens
            outcome.completion_tokens += result.completion_tokens
            outcome.latency += spent / len(batch)
            if not parsed.valid:
                still.append(index)
        pending = still
    return outcomes, engine_seconds, requests_made


def outcome_records(outcomes: Sequence[Outcome], settings: RunSettings, run_id: str) -> list[GenerationRecord]:
    created = now_utc()
    return [
        GenerationRecord(
            fingerprint=o.item.fingerprint,
            dataset=settings.plan.dataset,
            task=o.item.task.name,
            input_id=o.item.input_id,
            model=settings.plan.model_id,
            prompt_version=o.item.prompt_version,
            round=o.item.round,
            attempt=o.attempt,
            run_id=run_id,
            backend=settings.backend,
            sampling=o.item.sampling,
            prompt=json.dumps(list(o.messages or o.item.request.messages), ensure_ascii=False),
            raw_output=o.text,
            parsed=generations.parsed_json(o.parsed),
            valid=o.error is None,
            error=o.error,
            prompt_tokens=o.prompt_tokens,
            completion_tokens=o.completion_tokens,
            latency_s=o.latency,
            created_at=created,
            prompt_set=settings.plan.prompt_set,
        )
        for o in outcomes
    ]


ProgressHook = Callable[[str, int, int], Any]


class GenerationRun:
    """One generate command: one run id, one engine, any tasks and rounds."""

    def __init__(self, db_path: Path, settings: RunSettings, engine: LazyEngine, run_id: str | None = None, progress: Any = None):
        self.db_path = db_path
        self.settings = settings
        self.engine = engine
        self.run_id = run_id or new_run_id()
        self.progress = progress  # a rich Progress or None
        with open_store(db_path) as store:
            store.require_dataset(settings.plan.dataset)
            self.planner = Planner(store.conn, settings.plan)

    def _open(self) -> Store:
        return open_store_mid_run(self.db_path)

    def run(self, tasks: Sequence[GenerationTask]) -> list[TaskStats]:
        results = []
        for round_ in range(1, self.settings.rounds + 1):
            for task in tasks:
                results.append(self.run_task(task, round_))
        return results

    def run_task(self, task: GenerationTask, round_: int) -> TaskStats:
        stats = TaskStats(task.name, round_)
        started_at = now_utc()
        start = time.perf_counter()
        dataset = self.settings.plan.dataset
        method = task.profile_method or DEFAULT_METHOD
        try:
            # Outputs the task had to make first (the chain's profiles) are charged to its row.
            self._make_required(task, round_, stats, None, task.name)
            with self._open() as store:
                self._require_prior(store, task, round_)
                items = self.planner.plan(store.conn, task, round_)
                done = generations.valid_fingerprints(store.conn, dataset, task.name)
            todo = [i for i in items if i.fingerprint not in done]
            stats.requests += len(items)
            stats.skipped += len(items) - len(todo)
            self._execute(todo, stats, f"{task.name} r{round_}")
        except BaseException:
            self._record_interrupted(stats, started_at, start, method)
            raise
        stats.wall_seconds = time.perf_counter() - start - stats.startup_seconds
        with self._open() as store:
            if task.scored_against_truth:
                stats.fidelity = self._fidelity(store, items)
            self._record(store, stats, started_at, method)
        return stats

    def _record_interrupted(self, stats: TaskStats, started_at: Any, start: float, method: str) -> None:
        """The cost row of a task stopped part-way (Ctrl-C, a failed batch) that stored outputs: a
        rerun skips them, so no later row would count the engine time that made them. Best effort:
        a store that cannot be written now must not hide why the task stopped."""
        if not stats.new:
            return
        stats.wall_seconds = time.perf_counter() - start - stats.startup_seconds
        with contextlib.suppress(Exception), open_store(self.db_path) as store:  # no waiting: the user is stopping it
            self._record(store, stats, started_at, method)

    def _make_required(self, task: GenerationTask, round_: int, stats: TaskStats, users: set[str] | None,
                       label: str) -> None:
        """The outputs `task` requires that are missing for its users (or those of `users`),
        what they require in turn first (the chain of a labelling profiler: labels, then profiles)."""
        required = task.requires
        if required is None:
            return
        with self._open() as store:
            missing = self.planner.users_missing_required(store.conn, task, round_)
        if users is not None:
            missing &= users
        if not missing:
            return
        self._make_required(required, round_, stats, missing, label)
        # A prior's outputs are made for its whole set (every user's window), whatever users ask.
        wanted = self.planner.prior_users() if task.reads_prior else missing
        with self._open() as store:
            self._require_prior(store, required, round_)
            pre = self.planner.plan(store.conn, required, round_, only_users=wanted)
            done = generations.valid_fingerprints(store.conn, self.settings.plan.dataset, required.name) if pre else set()
        what = (f"{required.name} of all {len(self.planner.prior_news())} news in every user's window first "
                "(the prior's set; profiles after)") if task.reads_prior else f"{required.name}s first"
        self._execute([i for i in pre if i.fingerprint not in done], stats, f"{label} r{round_}: {what}")

    def _require_prior(self, store: Store, task: GenerationTask, round_: int) -> None:
        """A profiler with a prior writes no profile until its whole set is scored: after its
        required outputs were made, news still missing are ones whose answers stayed invalid."""
        missing = self.planner.missing_prior_news(store.conn, task, round_)
        if missing:
            raise UserError(
                f"--profile-method {task.method}: {len(missing)} of the {len(self.planner.prior_news())} news in the "
                f"users' windows (e.g. {missing[0]}) have no valid {task.requires.name if task.requires else 'label'} "
                "row after retries, so no profile was written (they share a prior over all of them); "
                "rerun the same command to retry them"
            )

    def _execute(self, todo: list[WorkItem], stats: TaskStats, label: str) -> None:
        if not todo:
            return
        s = self.settings
        bar = self.progress.add_task(label, total=len(todo), rate="") if self.progress is not None else None
        for begin in range(0, len(todo), max(1, s.batch_size)):
            batch = todo[begin : begin + max(1, s.batch_size)]
            backend, startup = None, 0.0
            if any(needs_engine(item.request) for item in batch):  # aggregated profiles need none
                backend, startup = self.engine.get()
                stats.dtype = backend.dtype
            stats.startup_seconds += startup
            outcomes, engine_seconds, attempts = complete_batch(backend, batch, s.retries)
            with self._open() as store:
                generations.write_generations(store, outcome_records(outcomes, s, self.run_id))
            stats.engine_seconds += engine_seconds
            stats.attempts += attempts
            stats.new += len(outcomes)
            for o in outcomes:
                stats.prompt_tokens += o.prompt_tokens
                stats.completion_tokens += o.completion_tokens
                if o.error is None:
                    stats.valid += 1
                else:
                    stats.invalid += 1
                    kind = o.error.split(" (")[0]
                    stats.errors[kind] = stats.errors.get(kind, 0) + 1
            if bar is not None:
                rate = stats.completion_tokens / stats.engine_seconds if stats.engine_seconds else 0.0
                self.progress.update(bar, advance=len(batch), rate=f"{rate:,.0f} tok/s")

    def _fidelity(self, store: Store, items: list[WorkItem]) -> Fidelity | None:
        truth = datasets.read_truth(store.conn, self.settings.plan.dataset)
        if not truth or not items:
            return None
        profiles = generations.profiles_with_fingerprints(store.conn, [i.fingerprint for i in items])
        result = profile_fidelity(profiles, truth)
        if result is not None:
            generations.record_fidelity(
                store,
                FidelityRecord(
                    dataset=self.settings.plan.dataset, run_id=self.run_id, model=self.settings.plan.model_id,
                    round=items[0].round, precision_at_3=result.precision_at_3, recall=result.recall,
                    region_accuracy=result.region_accuracy, users=result.users, created_at=now_utc(),
                    chance_precision_at_3=result.chance.precision_at_3, chance_recall=result.chance.recall,
                    chance_region_accuracy=result.chance.region_accuracy,
                ),
            )
        return result

    def _record(self, store: Store, stats: TaskStats, started_at: Any, method: str) -> None:
        """The task's cost row, of the source of `method` (the profile method its outputs belong to)."""
        plan = self.settings.plan
        generations.record_generation_run(
            store,
            GenerationRunRecord(
                run_id=self.run_id, dataset=plan.dataset, task=stats.task, model=plan.model_id,
                backend=self.settings.backend, round=stats.round, started_at=started_at, requests=stats.requests,
                new=stats.new, skipped=stats.skipped, valid=stats.valid, invalid=stats.invalid,
                attempts=stats.attempts, prompt_tokens=stats.prompt_tokens, completion_tokens=stats.completion_tokens,
                engine_seconds=stats.engine_seconds, startup_seconds=stats.startup_seconds,
                wall_seconds=stats.wall_seconds, price_per_hour=self.settings.price_per_hour or None,
                cost=generation_cost(self.settings.price_per_hour, stats.wall_seconds, stats.startup_seconds),
                prompt_set=plan.prompt_set, method=method, dtype=stats.dtype,
            ),
        )
