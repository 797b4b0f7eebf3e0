"""What the N-process path (workers.py) and the Ray path (ray_engine.py) share: the job a worker
runs on a batch (generate, parse, retry, write one shard), the planned rows as plain columns,
and the driver's loop (recover what an earlier run left, dispatch, merge each shard as it
arrives, count what it held).

The runner keeps planning and skipping; an executor only replaces its in-process batch loop.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from genre_local.errors import UserError
from genre_local.llm.backend import Backend, EngineOptions, GenRequest, open_backend
from genre_local.pipeline.plan import WorkItem
from genre_local.llm.prompt_sets import prompt_set_named
from genre_local.llm.tasks import with_profile_method
from genre_local.llm.news_scoring import NEWS_TOPICS_KIND, NewsTopicScoring
from genre_local.llm.topic_scoring import ProfileScoring
from genre_local.pipeline.runner import RunSettings, TaskStats, complete_batch, open_store_mid_run, outcome_records
from genre_local.pipeline.shards import RunFolder, merge_ready, recover, write_shard
from genre_local.store.generations import GENERATION_ARROW_SCHEMA, GenerationRecord


@dataclass(frozen=True)
class BackendFactory:
    """Opens a backend inside a worker. Picklable, so it travels to processes and Ray actors."""

    name: str
    options: EngineOptions

    def __call__(self) -> Backend:
        return open_backend(self.name, self.options)


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs besides its items: how to retry, how to label rows, where to write."""

    settings: RunSettings
    run_id: str
    folder: RunFolder


# Engine start-up in workers, told to the driver through small files in the run folder so the
# driver can keep it out of its "outside the engine" time, as the single-process loop does.
STARTUP_SUBDIR = "startup"


@dataclass(frozen=True)
class Startup:
    # "cluster": once before any engine (ray.init); "engine": one worker's backend; "processor":
    # Ray's vLLM processor (GPU), whose engines start inside the pipeline, unmeasured (seconds 0):
    # it tells the dtype only.
    stage: str
    seconds: float
    dtype: str | None = None  # an engine's Backend.dtype, for the driver's generation_runs row


def record_startup(folder: RunFolder, run_id: str, worker: str, stage: str, seconds: float,
                   dtype: str | None = None) -> None:
    """Written atomically (temp name, rename), one file per start, read once by the driver."""
    where = folder.root / STARTUP_SUBDIR
    where.mkdir(parents=True, exist_ok=True)
    name = f"{run_id}.{worker}.{uuid.uuid4().hex[:8]}.json"
    temp = where / f".{name}.tmp"
    temp.write_text(json.dumps({"stage": stage, "seconds": seconds, "dtype": dtype}))
    temp.rename(where / name)


def open_timed(factory: Callable[[], Backend], job: ShardJob, worker: str) -> Backend:
    """The worker's backend, its start-up time recorded for the driver."""
    started = time.perf_counter()
    backend = factory()
    record_startup(job.folder, job.run_id, worker, "engine", time.perf_counter() - started, backend.dtype)
    return backend


def collect_startups(folder: RunFolder, run_id: str) -> list[Startup]:
    """This run's start-up records, removed once read (a later task counts only its own);
    an unreadable record is skipped and removed."""
    where = folder.root / STARTUP_SUBDIR
    if not where.is_dir():
        return []
    found = []
    for path in sorted(where.glob(f"{run_id}.*.json")):
        try:
            data = json.loads(path.read_text())
            dtype = data.get("dtype")
            found.append(Startup(str(data["stage"]), float(data["seconds"]), None if dtype is None else str(dtype)))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        path.unlink(missing_ok=True)
    return found


def startup_wall_seconds(startups: Sequence[Startup]) -> float:
    """Wall time the driver waited for start-up: cluster stages one after another, then the
    engines, which start side by side (so the slowest one counts)."""
    cluster = sum(s.seconds for s in startups if s.stage == "cluster")
    engines = max((s.seconds for s in startups if s.stage == "engine"), default=0.0)
    return cluster + engines


def engines_dtype(startups: Sequence[Startup]) -> str | None:
    """The dtype the workers' engines computed in: one name, or the distinct ones joined by ","
    where workers on different machines resolved "auto" differently; None: no engine started."""
    names = sorted({s.dtype for s in startups if s.stage in ("engine", "processor") and s.dtype is not None})
    return ",".join(names) or None


def complete_to_shard(backend: Backend, items: Sequence[WorkItem], job: ShardJob, worker: str) -> Path | None:
    """One batch: the runner's own generate/parse/retry, its row layout, then one shard file."""
    if not items:
        return None
    outcomes, _, _ = complete_batch(backend, items, job.settings.retries)
    return write_shard(job.folder, records_table(outcome_records(outcomes, job.settings, job.run_id)), job.run_id, worker)


def records_table(records: Sequence[GenerationRecord]) -> pa.Table:
    return pa.Table.from_pylist([asdict(r) for r in records], schema=GENERATION_ARROW_SCHEMA)


# The planned rows as plain columns (Ray Data carries Arrow rows between machines).
def item_to_row(item: WorkItem) -> dict[str, Any]:
    r = item.request
    return {
        "fingerprint": item.fingerprint,
        "task": item.task.name,
        "prompt_set": item.task.prompt_set,
        "per_request": item.per_request,
        "input_id": item.input_id,
        "round": item.round,
        "prompt_version": item.prompt_version,
        "sampling": item.sampling,
        "messages": json.dumps(list(r.messages), ensure_ascii=False),
        "schema": json.dumps(r.schema) if r.schema is not None else "",
        "max_tokens": r.max_tokens,
        "temperature": r.temperature,
        "top_p": r.top_p,
        "seed": r.seed,
        "repetition_penalty": r.repetition_penalty,
        "history_titles": json.dumps(list(item.history_titles), ensure_ascii=False),
        "scoring": r.scoring.as_json() if r.scoring is not None else "",
    }


def row_to_item(row: dict[str, Any]) -> WorkItem:
    scoring: Any = None
    task = prompt_set_named(str(row["prompt_set"])).task(str(row["task"]))
    if row.get("scoring") and json.loads(row["scoring"]).get("kind") == NEWS_TOPICS_KIND:
        scoring = NewsTopicScoring.from_json(row["scoring"])  # label_scores: a (helper) task of its own
    elif row.get("scoring"):  # the scored profiler: the same task made by its other method
        scoring = ProfileScoring.from_json(row["scoring"])
        task = with_profile_method([task], "score")[0]
    return WorkItem(
        task=task,
        input_id=str(row["input_id"]),
        round=int(row["round"]),
        fingerprint=str(row["fingerprint"]),
        prompt_version=str(row["prompt_version"]),
        sampling=str(row["sampling"]),
        request=GenRequest(
            messages=tuple(json.loads(row["messages"])),
            max_tokens=int(row["max_tokens"]),
            schema=json.loads(row["schema"]) if row["schema"] else None,
            temperature=float(row["temperature"]),
            top_p=float(row["top_p"]),
            seed=int(row["seed"]),
            repetition_penalty=float(row["repetition_penalty"]),
            scoring=scoring,
        ),
        history_titles=tuple(json.loads(row["history_titles"])),
        per_request=int(row["per_request"]),
    )


def tally(stats: TaskStats, rows: pa.Table) -> None:
    """Count a merged shard's rows the way the in-process loop counts its outcomes. A row's
    latency is its share of engine time summed over its attempts, and `attempt` is the number
    of engine requests it took, so both sums are exact."""
    data = rows.select(["valid", "error", "attempt", "prompt_tokens", "completion_tokens", "latency_s"]).to_pylist()
    for row in data:
        stats.new += 1
        stats.attempts += row["attempt"]
        stats.prompt_tokens += row["prompt_tokens"]
        stats.completion_tokens += row["completion_tokens"]
        stats.engine_seconds += row["latency_s"]
        if row["valid"]:
            stats.valid += 1
        else:
            stats.invalid += 1
            kind = (row["error"] or "invalid").split(" (")[0]
            stats.errors[kind] = stats.errors.get(kind, 0) + 1


class WorkersFailed(RuntimeError):
    """Some workers stopped before finishing their share; what they finished is stored."""


def warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# A dispatcher runs the items on its workers and yields, from time to time, the shards that are
# complete so far (possibly none); it returns once every worker has stopped.
Dispatch = Callable[[list[WorkItem], ShardJob], Iterator[list[Path]]]


class ShardedExecutor:
    """Drives one dispatcher: the runner calls `execute` where it would run its batch loop."""

    def __init__(self, db_path: Path, folder: RunFolder, dispatch: Dispatch, notify: Callable[[str], Any] = warn):
        self.db_path = db_path
        self.folder = folder.create()
        self.dispatch = dispatch
        self.notify = notify
        self.dtype: str | None = None  # the workers' engines' (engines_dtype), once one started

    def execute(self, todo: list[WorkItem], stats: TaskStats, settings: RunSettings, run_id: str,
                on_rows: Callable[[int], Any] | None = None) -> None:
        if not todo:
            return
        # Shards an earlier run left complete are merged first, so what they hold is skipped.
        with open_store_mid_run(self.db_path) as store:
            self._report(recover(store, self.folder))
            stored = {
                f for (f,) in store.conn.execute(
                    "SELECT fingerprint FROM generations WHERE valid AND fingerprint IN (SELECT unnest(?::VARCHAR[]))",
                    [[i.fingerprint for i in todo]],
                ).fetchall()
            }
        todo = [i for i in todo if i.fingerprint not in stored]
        stats.skipped += len(stored)
        if not todo:
            return
        job = ShardJob(settings, run_id, self.folder)
        wanted = {i.fingerprint for i in todo}
        done: set[str] = set()
        failure: BaseException | None = None
        try:
            for shards in self.dispatch(todo, job):
                done |= self._merge(shards, stats, run_id, on_rows)
        except Exception as exc:  # merge what finished before reporting the failure
            failure = exc
        startups = collect_startups(self.folder, run_id)
        stats.startup_seconds += startup_wall_seconds(startups)
        # Workers keep their engines across tasks: a later task sees no start, the same dtype.
        self.dtype = engines_dtype(startups) or self.dtype
        stats.dtype = self.dtype
        done |= self._merge(self.folder.ready_shards(), stats, run_id, on_rows)
        missing = wanted - done
        if isinstance(failure, UserError):  # e.g. an unreachable cluster: the user's to fix, said as is
            raise failure
        if failure is not None or missing:
            why = f" ({type(failure).__name__}: {' '.join(str(failure).split())[:200]})" if failure else ""
            raise WorkersFailed(
                f"{len(missing)} of {len(wanted)} requests were not completed{why}; "
                f"the {len(done)} completed are stored: rerun the same command to finish"
            ) from failure

    def close(self) -> None:
        """Release what the dispatcher holds across tasks (a local Ray), if anything."""
        close = getattr(self.dispatch, "close", None)
        if close is not None:
            close()

    def _merge(self, shards: list[Path], stats: TaskStats, run_id: str, on_rows: Callable[[int], Any] | None) -> set[str]:
        if not shards:
            return set()
        with open_store_mid_run(self.db_path) as store:
            report = merge_ready(store, self.folder, shards)
        self._report(report)
        done: set[str] = set()
        for rows in report.tables(run_id):
            tally(stats, rows)
            done.update(rows.column("fingerprint").to_pylist())
            if on_rows is not None:
                on_rows(rows.num_rows)
        return done

    def _report(self, report: Any) -> None:
        for shard in report.quarantined:
            self.notify(shard.message)


def poll(folder: RunFolder, alive: Callable[[], bool], interval: float = 0.5) -> Iterator[list[Path]]:
    """Yield the complete shards every `interval` seconds while `alive()` holds."""
    while alive():
        time.sleep(interval)
        yield folder.ready_shards()


def per_worker_options(options: EngineOptions, workers: int, cores: int, on_gpu: bool) -> EngineOptions:
    """Share one CPU machine between worker processes: the cores (one left free, as the
    single-process backend does) and vLLM's RAM share. On GPUs each worker has a device of its own."""
    if on_gpu or workers <= 1:
        return options
    threads = max(1, (cores - 1) // workers) if cores > 2 else 1
    share = options.gpu_memory_utilization
    # Unset: each worker's engine sizes its own KV cache from the model (llm/engine_sizing.py).
    return replace(options, threads=threads, gpu_memory_utilization=None if share is None else share / workers)
