"""Helpers for the N-process and Ray generation tests: a single-process reference run and the
stored rows to compare (the prepared embedded model: tests/support_llm.py)."""

from __future__ import annotations

from pathlib import Path

from genre_local.llm.backend import EngineOptions
from genre_local.llm.tasks import TASKS
from genre_local.pipeline.distributed import BackendFactory
from genre_local.pipeline.plan import PlanSettings
from genre_local.pipeline.runner import GenerationRun, LazyEngine, RunSettings
from genre_local.store import open_store
from tests.support_generate import DATASET


def transformers_factory(model_dir: Path, threads: int = 1) -> BackendFactory:
    # Greedy, one request per engine call: outputs cannot depend on how requests were batched.
    return BackendFactory("transformers", EngineOptions(model_dir=model_dir, micro_batch=1, threads=threads))


def real_settings(limit: int) -> RunSettings:
    return RunSettings(plan=PlanSettings(dataset=DATASET, model_id="embedded", limit=limit), backend="transformers", batch_size=1)


def single_process_run(db: Path, factory: BackendFactory, settings: RunSettings, tasks: tuple[str, ...]) -> None:
    engine = LazyEngine(factory)
    try:
        GenerationRun(db, settings, engine).run([TASKS[name] for name in tasks])
    finally:
        engine.close()


def outputs(db: Path) -> dict[str, tuple]:
    """fingerprint -> what the engine answered (independent of run, timing and worker)."""
    with open_store(db) as store:
        rows = store.conn.execute("SELECT fingerprint, task, input_id, raw_output, parsed, valid, attempt, completion_tokens FROM generations").fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def key_counts(db: Path) -> tuple[int, int]:
    with open_store(db) as store:
        return store.conn.execute("SELECT count(*), count(DISTINCT fingerprint) FROM generations").fetchone()


class PrintedProgress:
    """Stands in for a rich Progress: one stdout line per merged batch of rows."""

    def add_task(self, label: str, total: int, rate: str = "") -> str:
        print(f"task {label} {total}", flush=True)
        return label

    def update(self, task: str, advance: int, rate: str = "") -> None:
        print(f"merged {advance}", flush=True)


def ray_run(db: Path, run_dir: Path, factory, replicas: int = 2, batch_size: int = 1, tasks=("summarize", "profile", "news", "chain"),
            settings: RunSettings | None = None, progress=None):
    """Every task through a local Ray with `replicas` CPU actors; (stats, run_id)."""
    from genre_local.pipeline.distributed import ShardedExecutor
    from genre_local.pipeline.ray_engine import RayCluster, RayDispatch
    from genre_local.pipeline.sharded_run import ShardedGenerationRun
    from genre_local.pipeline.shards import RunFolder

    settings = settings or RunSettings(plan=PlanSettings(dataset=DATASET, model_id="fake-model"), backend="fake", batch_size=batch_size)
    dispatch = RayDispatch(RayCluster(replicas=replicas, local_cpus=replicas), factory)
    run = ShardedGenerationRun(db, settings, ShardedExecutor(db, RunFolder(run_dir), dispatch), progress=progress)
    return run.run([TASKS[name] for name in tasks]), run.run_id


if __name__ == "__main__":
    # python -m tests.support_scale DB RUN_DIR SLEEP TASKS: the tasks (comma-separated) through a local Ray (2 actors,
    # fake engine sleeping SLEEP s per call), a line per merged batch; the kill -9 test drives it.
    import functools
    import sys

    from tests.support_generate import FakeBackend

    ray_run(Path(sys.argv[1]), Path(sys.argv[2]), functools.partial(FakeBackend, sleep=float(sys.argv[3])),
            tasks=tuple(sys.argv[4].split(",")), progress=PrintedProgress())
    print("done", flush=True)
