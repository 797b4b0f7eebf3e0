"""`generate --gpus N`: N engine processes on one machine, one per GPU (or, without GPUs, N CPU
worker processes of the embedded model, which is how the tests run it).

Each worker gets its own share of the pending requests (every N-th, so each share mixes long and
short inputs alike), opens its own engine, and writes one shard per completed batch; the driver
merges shards into the store as they appear (shards.py). Workers are spawned, not forked: a
forked copy of a process that has touched torch or DuckDB is not safe.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from genre_local.llm.backend import Backend
from genre_local.pipeline.distributed import ShardJob, complete_to_shard, item_to_row, open_timed, poll, row_to_item
from genre_local.pipeline.plan import WorkItem


def split_round_robin(items: Sequence[WorkItem], workers: int) -> list[list[WorkItem]]:
    """Worker k takes items k, k+N, k+2N, ...: disjoint shares covering every item once."""
    return [list(items[k::workers]) for k in range(max(1, workers))]


@dataclass(frozen=True)
class WorkerSlot:
    index: int
    device: str | None  # CUDA device id for this worker; None on CPU
    cpu_cores: str | None  # "a-b" cores vLLM's CPU build binds to; None to leave its default


def worker_slots(workers: int, on_gpu: bool, cores: int) -> list[WorkerSlot]:
    """One GPU per worker, or on CPU a disjoint core range per worker (vLLM's CPU build binds its
    OpenMP threads to all cores otherwise, and N engines would fight over each one)."""
    if on_gpu:
        return [WorkerSlot(k, str(k), None) for k in range(workers)]
    per = max(1, cores // workers)
    slots = []
    for k in range(workers):
        first = min(k * per, cores - 1)
        slots.append(WorkerSlot(k, None, f"{first}-{min(first + per, cores) - 1}"))
    return slots


def _worker_main(slot: WorkerSlot, rows: list[dict], job: ShardJob, factory: Callable[[], Backend]) -> None:
    # Before the backend imports torch or vLLM: they read these once.
    if slot.device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.device
    elif slot.cpu_cores is not None:
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", slot.cpu_cores)
    # Planned rows, not WorkItems: a task object holds lambdas, which pickle cannot carry.
    items = [row_to_item(row) for row in rows]
    backend = open_timed(factory, job, f"w{slot.index}")
    try:
        step = max(1, job.settings.batch_size)
        for begin in range(0, len(items), step):
            complete_to_shard(backend, items[begin : begin + step], job, f"w{slot.index}")
    finally:
        backend.close()


class ProcessDispatch:
    """A dispatcher (see distributed.Dispatch) over N spawned processes."""

    def __init__(self, factory: Callable[[], Backend], slots: Sequence[WorkerSlot], poll_seconds: float = 0.5):
        self.factory = factory
        self.slots = list(slots)
        self.poll_seconds = poll_seconds

    def __call__(self, todo: list[WorkItem], job: ShardJob) -> Iterator[list[Path]]:
        context = multiprocessing.get_context("spawn")
        shares = split_round_robin(todo, len(self.slots))
        processes = [
            context.Process(
                target=_worker_main,
                args=(slot, [item_to_row(i) for i in share], job, self.factory),
                name=f"genre-worker-{slot.index}",
            )
            for slot, share in zip(self.slots, shares)
            if share
        ]
        try:
            for process in processes:
                process.start()
            yield from poll(job.folder, lambda: any(p.is_alive() for p in processes), self.poll_seconds)
        finally:
            # Reached early only when the driver itself fails: stop our own workers, not orphan them.
            for process in processes:
                if process.is_alive():
                    process.terminate()
                process.join()
        failed = [f"worker {p.name} exited with code {p.exitcode}" for p in processes if p.exitcode != 0]
        if failed:
            raise RuntimeError("; ".join(failed))
