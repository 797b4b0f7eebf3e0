"""A generation run whose batches run on other processes or machines: the runner's planning,
skipping, fidelity and cost records unchanged, its in-process batch loop replaced by a
ShardedExecutor (workers write shards, this process merges them into the store)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genre_local.llm.news_labels import needs_engine
from genre_local.pipeline.distributed import ShardedExecutor
from genre_local.pipeline.plan import WorkItem
from genre_local.pipeline.runner import GenerationRun, LazyEngine, RunSettings, TaskStats


class ShardedGenerationRun(GenerationRun):
    def __init__(self, db_path: Path, settings: RunSettings, executor: ShardedExecutor, run_id: str | None = None, progress: Any = None):
        # The engines live in the workers: the driver's own engine is never started.
        super().__init__(db_path, settings, LazyEngine(_no_local_engine), run_id=run_id, progress=progress)
        self.executor = executor

    def run(self, tasks: Sequence[Any]) -> list[TaskStats]:
        try:
            return super().run(tasks)
        finally:
            self.executor.close()

    def _execute(self, todo: list[WorkItem], stats: TaskStats, label: str) -> None:
        # Profiles aggregated from stored labels need no engine: made here, in-process.
        local = [item for item in todo if not needs_engine(item.request)]
        if local:
            super()._execute(local, stats, label)
        todo = [item for item in todo if needs_engine(item.request)]
        if not todo:
            return
        bar = self.progress.add_task(label, total=len(todo), rate="") if self.progress is not None else None

        def advance(rows: int) -> None:
            if bar is not None:
                rate = stats.completion_tokens / stats.engine_seconds if stats.engine_seconds else 0.0
                self.progress.update(bar, advance=rows, rate=f"{rate:,.0f} tok/s")

        self.executor.execute(todo, stats, self.settings, self.run_id, on_rows=advance)


def _no_local_engine():
    raise RuntimeError("a sharded run generates in its workers, never in the driver")
