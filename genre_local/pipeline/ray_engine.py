"""`generate --engine ray [--ray-address ADDR]`: the pending requests through a Ray Data pipeline.

    planned rows (fingerprint, messages, sampling, schema)
      -> engine replicas   CPU: an actor pool running our own backend (generate, parse, retry)
                           GPU: Ray's vLLM batch processor (ray.data.llm), `replicas` engines with
                                tensor parallelism per replica, then a parse step
      -> one Parquet shard per completed batch in the run folder (shared storage on a cluster)
      -> merged into DuckDB by this driver as the shards arrive (shards.py, exactly once)

The GPU branch is built against ray.data.llm's API (Ray 2.60: its documentation and source) and
has never run: this project's CI has no GPU and no GPU build of vLLM. Its pieces are tested
without a GPU (tests/test_ray_vllm_config.py): the processor config, the rows the preprocess step
hands Ray's vLLM stage (made into vllm.SamplingParams as that stage does) and the postprocess.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from genre_local.errors import UserError
from genre_local.llm.backend import Backend, EngineOptions
from genre_local.pipeline.distributed import (
    ShardJob, complete_to_shard, item_to_row, open_timed, record_startup, records_table, row_to_item,
)
from genre_local.pipeline.plan import WorkItem
from genre_local.pipeline.runner import Outcome, outcome_records, repair_request
from genre_local.pipeline.shards import ShardError, read_shard, write_shard


@dataclass(frozen=True)
class RayCluster:
    """Where the pipeline runs: a cluster at `address`, or a Ray started here for this command."""

    address: str | None = None  # None: a local Ray on this machine, shut down afterwards
    replicas: int = 2  # engine replicas (actors)
    tensor_parallel: int = 1  # GPUs per vLLM replica (GPU branch only)
    local_cpus: int | None = None  # CPUs a local Ray may use (None: this machine's, at least one per replica)


def start_ray(cluster: RayCluster) -> bool:
    """Connect or start Ray, quietly (no dashboard, no worker logs on our terminal, no progress
    bars). True when this call started it, so the caller shuts it down."""
    import ray
    from ray.data import DataContext

    if ray.is_initialized():
        return False
    # RAY_ADDRESS names a cluster as --ray-address does; Ray refuses num_cpus when connecting.
    address = cluster.address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_reachable(address)
    options: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        if address:
            ray.init(address=address, **options)
        else:
            # Logical CPUs: one per replica at least; on a GPU machine the processor's CPU stages
            # (chat template, tokenizer) need the other cores.
            ray.init(num_cpus=cluster.local_cpus or max(cluster.replicas, os.cpu_count() or 1), **options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"--ray-address {address}" if address else "a local Ray"
        raise UserError(f"cannot start {where}: {' '.join(str(exc).split())[:200]}; check the address or run `ray status` there") from exc
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    return True


def _planned_rows(items: list[WorkItem], job: ShardJob) -> Any:
    """The planned rows as a Ray dataset of one block per batch, so every replica gets work
    (one block would feed one actor only)."""
    import ray

    step = max(1, job.settings.batch_size)
    return ray.data.from_items([item_to_row(i) for i in items], override_num_blocks=max(1, -(-len(items) // step)))


@contextlib.contextmanager
def _quiet_remote_args() -> Iterator[None]:
    """Ray 2.60 documents `max_restarts=0` on map_batches yet warns that such remote arguments
    are deprecated; the warning says nothing to our users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        yield


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT that refuses connections is a user mistake; ray.init would retry it for
    minutes. Other forms (auto, ray://...) are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UserError(
            f"--ray-address {address}: nothing answers there ({exc.strerror or exc}); "
            "start the head node with `ray start --head` or check the address"
        ) from exc


class ShardWriter:
    """A Ray Data actor (CPU branch): opens our backend once, then per batch runs the runner's
    generate/parse/retry and writes one shard; its output row says where the shard is."""

    def __init__(self, job: ShardJob, factory: Callable[[], Backend]):
        self.job = job
        self.worker = f"ray{uuid.uuid4().hex[:6]}"
        self.backend = open_timed(factory, job, self.worker)

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        items = [row_to_item(row) for row in batch.to_pylist()]
        path = complete_to_shard(self.backend, items, self.job, self.worker)
        return {"shard": [str(path) if path else ""], "rows": [len(items)]}


class RayDispatch:
    """A dispatcher (see distributed.Dispatch) over a Ray Data pipeline."""

    def __init__(self, cluster: RayCluster, factory: Callable[[], Backend], options: EngineOptions | None = None, backend: str = ""):
        self.cluster = cluster
        self.factory = factory
        self.options = options  # the GPU branch hands them to ray.data.llm
        self.backend = backend
        self._started = False

    def __call__(self, todo: list[WorkItem], job: ShardJob) -> Iterator[list[Path]]:
        # Ray starts once per command (tens of seconds) and stays up for its tasks and rounds.
        import ray

        started = time.perf_counter()
        self._started = start_ray(self.cluster) or self._started
        record_startup(job.folder, job.run_id, "driver", "cluster", time.perf_counter() - started)
        if self.options is not None and uses_vllm_processor(ray.cluster_resources(), self.backend, self.cluster.tensor_parallel):
            yield from self._gpu(todo, job)
        else:
            yield from self._cpu(todo, job)

    def close(self) -> None:
        """Shut down the local Ray this dispatcher started (never a cluster it only joined)."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def _cpu(self, todo: list[WorkItem], job: ShardJob) -> Iterator[list[Path]]:
        import ray

        with _quiet_remote_args():
            dataset = _planned_rows(todo, job).map_batches(
                ShardWriter,
                fn_constructor_kwargs={"job": job, "factory": self.factory},
                batch_size=max(1, job.settings.batch_size),
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=self.cluster.replicas),
                num_cpus=1,
                # A dead actor fails the pipeline rather than being restarted: the driver stores what
                # finished and a rerun does the rest (and Ray stays quiet about restartable actors).
                max_restarts=0,
            )
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield [Path(p) for p in batch.column("shard").to_pylist() if p]

    def _gpu(self, todo: list[WorkItem], job: ShardJob) -> Iterator[list[Path]]:
        """One pass per attempt: every pending request through vLLM replicas, shards written by a
        parse step; the invalid ones go again with the runner's repaired request (UNTESTED here)."""
        if any(item.request.scoring is not None for item in todo):
            # Ray's vLLM stage only decodes; scoring needs our backend's score call.
            raise UserError(
                "--engine ray on GPUs cannot run the scored profilers (--profile-method score or label-score): "
                "use --engine local with --gpus N, or --profile-method generate or label"
            )
        # The replicas' dtype, as the other paths record their engines' (their start is not
        # measured apart: it falls in the pipeline's wall time).
        record_startup(job.folder, job.run_id, "driver", "processor", 0.0, processor_dtype(self.options))
        pending = todo
        for attempt in range(1, job.settings.retries + 2):
            if not pending:
                return
            shards = list(_vllm_pass(pending, job, self.cluster, self.options, attempt))
            yield shards
            errors: dict[str, str] = {}
            for path in shards:
                try:
                    rows = read_shard(path)  # still in pending/ until the driver merges it after the yield
                except ShardError:
                    continue  # the driver quarantines it; its keys are redone by a rerun
                for row in rows.select(["fingerprint", "valid", "error"]).to_pylist():
                    if not row["valid"]:
                        errors[row["fingerprint"]] = row["error"] or "invalid"
            # The retry note names why the last answer was rejected, as in the in-process loop.
            failed = [Outcome(i, error=errors[i.fingerprint]) for i in pending if i.fingerprint in errors]
            pending = [replace(o.item, request=repair_request(o.item.request, o, attempt + 1)) for o in failed]


def uses_vllm_processor(resources: dict[str, float], backend: str, tensor_parallel: int) -> bool:
    """Ray's vLLM processor where the cluster has GPUs for a replica and vLLM is the backend;
    otherwise CPU actors run our own backend."""
    return backend == "vllm" and resources.get("GPU", 0) >= max(1, tensor_parallel)


def vllm_sampling(row: dict[str, Any]) -> dict[str, Any]:
    """A planned row's sampling parameters as ray.data.llm's vLLM stage takes them: it builds
    `vllm.SamplingParams(**params, structured_outputs=StructuredOutputsParams(**params.pop(
    "structured_outputs")))`. The schema stays a JSON string (StructuredOutputsParams takes str or
    dict): as a nested dict, Arrow would merge the tasks' schemas into one struct type and hand
    each row the other schemas' keys as nulls. Plain Python numbers: Arrow rows may carry numpy
    scalars."""
    params: dict[str, Any] = {
        "temperature": float(row["temperature"]), "top_p": float(row["top_p"]), "seed": int(row["seed"]),
        "max_tokens": int(row["max_tokens"]), "repetition_penalty": float(row["repetition_penalty"]),
    }
    if row["schema"]:
        params["structured_outputs"] = {"json": row["schema"]}
    return params


def processor_dtype(options: EngineOptions) -> str:
    """The dtype the processor's vLLM replicas compute in: [generate] dtype resolved for CUDA
    (auto: bfloat16), by its torch name as a generation_runs row records it."""
    from genre_local.llm.engine_sizing import resolve_dtype

    return resolve_dtype(options.dtype, on_cuda=True)


def vllm_processor_config(options: EngineOptions, cluster: RayCluster, batch_size: int) -> Any:
    """ray.data.llm's vLLMEngineProcessorConfig for `cluster.replicas` engines of
    `cluster.tensor_parallel` GPUs each. Builds without a GPU (it is a pydantic model)."""
    from ray.data.llm import vLLMEngineProcessorConfig

    return vLLMEngineProcessorConfig(
        model_source=str(options.model_dir),
        engine_kwargs={
            "tensor_parallel_size": cluster.tensor_parallel,
            "max_model_len": options.max_model_len,
            "dtype": processor_dtype(options),  # the GPU branch: auto is bfloat16
            "enable_prefix_caching": options.prefix_caching,
            **({} if options.max_num_seqs is None else {"max_num_seqs": options.max_num_seqs}),
            # Unset: vLLM's own default share of each replica's GPU.
            **({} if options.gpu_memory_utilization is None else {"gpu_memory_utilization": options.gpu_memory_utilization}),
        },
        concurrency=cluster.replicas,
        batch_size=max(1, batch_size),
    )


def vllm_preprocess(row: dict[str, Any]) -> dict[str, Any]:
    """Planned row -> the processor's input: `messages` as a list (its chat-template stage
    applies the model's template) and `sampling_params`; the planned columns ride along."""
    return {**row, "messages": json.loads(row["messages"]), "sampling_params": vllm_sampling(row)}


class VllmPostprocess:
    """Processor output row -> the planned row's columns (messages as JSON again) plus the
    answer and its token counts, as _ParsedShards reads them. A class, not a closure over the
    work items: Ray pickles it to every worker, so it carries only the column names."""

    def __init__(self, planned_columns: list[str]):
        self.planned_columns = planned_columns

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {k: row[k] for k in self.planned_columns}
        messages = row["messages"]
        out["messages"] = messages if isinstance(messages, str) else json.dumps(list(messages), ensure_ascii=False)
        out.update(text=row["generated_text"], prompt_tokens=int(row["num_input_tokens"]),
                   completion_tokens=int(row["num_generated_tokens"]))
        return out


def _vllm_pass(items: list[WorkItem], job: ShardJob, cluster: RayCluster, options: EngineOptions, attempt: int) -> Iterator[Path]:
    import ray
    from ray.data.llm import build_processor

    processor = build_processor(
        vllm_processor_config(options, cluster, job.settings.batch_size),
        preprocess=vllm_preprocess,
        postprocess=VllmPostprocess(list(item_to_row(items[0]))),
    )
    with _quiet_remote_args():
        dataset = processor(_planned_rows(items, job)).map_batches(
            _ParsedShards, fn_constructor_kwargs={"job": job, "attempt": attempt}, batch_size=max(1, job.settings.batch_size),
            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=cluster.replicas), num_cpus=1, max_restarts=0,
        )
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        yield from (Path(p) for p in batch.column("shard").to_pylist() if p)


class _ParsedShards:
    """GPU branch: parse vLLM's answers with the task's own parser, write one shard per batch."""

    def __init__(self, job: ShardJob, attempt: int):
        self.job = job
        self.attempt = attempt
        self.worker = f"ray{uuid.uuid4().hex[:6]}"

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        outcomes = []
        for row in batch.to_pylist():
            item = row_to_item(row)
            parsed = item.task.parse(row["text"], item.per_request, item.history_titles)
            outcomes.append(Outcome(
                item, text=row["text"], messages=item.request.messages, parsed=parsed.value, error=parsed.error,
                attempt=self.attempt, prompt_tokens=int(row["prompt_tokens"]), completion_tokens=int(row["completion_tokens"]),
            ))
        rows = records_table(outcome_records(outcomes, self.job.settings, self.job.run_id))
        path = write_shard(self.job.folder, rows, self.job.run_id, self.worker)
        return {"shard": [str(path) if path else ""], "rows": [len(outcomes)]}
