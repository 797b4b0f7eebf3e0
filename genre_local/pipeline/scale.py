"""From `generate`'s scaling flags (--gpus, --engine, --ray-address, --replicas, --tensor-parallel,
--run-dir) to the executor that runs the batches elsewhere, or None for the in-process loop."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from genre_local.config import GENERATE_ENGINES, GenerateConfig
from genre_local.errors import UserError
from genre_local.llm.backend import EngineOptions
from genre_local.pipeline.distributed import BackendFactory, ShardedExecutor, per_worker_options
from genre_local.pipeline.shards import RunFolder, default_run_folder

ENGINES = GENERATE_ENGINES


@dataclass(frozen=True)
class ScaleSettings:
    engine: str = "local"  # local: this process (or --gpus N processes); ray: a Ray Data pipeline
    gpus: int = 1  # local engine: worker processes, one per GPU (CPU processes without GPUs)
    ray_address: str | None = None  # ray engine: a running cluster; None starts Ray here
    replicas: int | None = None  # ray engine: engine replicas (default: --gpus when > 1, else 2)
    tensor_parallel: int = 1  # ray engine on GPUs: GPUs per vLLM replica
    run_dir: Path | None = None  # where shards go (shared storage on a cluster)

    @property
    def sharded(self) -> bool:
        return self.engine == "ray" or self.gpus > 1


def scale_from_config(config: GenerateConfig, *, engine: str | None = None, gpus: int | None = None,
                      ray_address: str | None = None, replicas: int | None = None, tensor_parallel: int = 1,
                      run_dir: Path | None = None) -> ScaleSettings:
    """[generate] gpus / engine / ray_address, each overridden by its flag when the flag is given."""
    return ScaleSettings(
        engine=engine if engine is not None else config.engine,
        gpus=gpus if gpus is not None else config.gpus,
        ray_address=ray_address if ray_address is not None else config.ray_address,
        replicas=replicas, tensor_parallel=tensor_parallel, run_dir=run_dir,
    )


def check_scale(s: ScaleSettings) -> ScaleSettings:
    """Every flag combination that cannot work, refused before any model loads."""
    if s.engine not in ENGINES:
        raise UserError(f"--engine {s.engine!r} is not known; use local or ray")
    for flag, value in (("--gpus", s.gpus), ("--replicas", s.replicas), ("--tensor-parallel", s.tensor_parallel)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value}: must be 1 or more")
    if s.engine != "ray":
        for flag, given in (("--ray-address", s.ray_address), ("--replicas", s.replicas), ("--tensor-parallel", s.tensor_parallel != 1)):
            if given:
                raise UserError(f"{flag} applies to --engine ray only; add --engine ray or drop {flag}")
    if s.run_dir is not None and s.run_dir.exists() and not s.run_dir.is_dir():
        raise UserError(f"--run-dir {s.run_dir} is a file; give a folder (created when missing)")
    if s.run_dir is not None and not s.sharded:
        raise UserError("--run-dir applies to --gpus N (N > 1) or --engine ray only")
    return s


def visible_gpus() -> int:
    """CUDA devices this process may use (0 on a CPU build of torch)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def build_executor(
    scale: ScaleSettings, db_path: Path, cache_dir: Path, backend: str, options: EngineOptions
) -> ShardedExecutor | None:
    """None for the plain in-process run; else the executor for N processes or Ray."""
    if not scale.sharded:
        return None
    folder = RunFolder(scale.run_dir) if scale.run_dir is not None else default_run_folder(cache_dir)
    if scale.engine == "ray":
        from genre_local.pipeline.ray_engine import RayCluster, RayDispatch

        replicas = scale.replicas or (scale.gpus if scale.gpus > 1 else 2)
        cluster = RayCluster(address=scale.ray_address, replicas=replicas, tensor_parallel=scale.tensor_parallel)
        gpus = visible_gpus() if scale.ray_address is None else 0
        # CPU actors share this machine's cores and RAM; on a cluster each actor has its own node share.
        actor_options = per_worker_options(options, replicas, os.cpu_count() or 2, on_gpu=gpus > 0 or scale.ray_address is not None)
        dispatch = RayDispatch(cluster, BackendFactory(backend, actor_options), options=options, backend=backend)
        return ShardedExecutor(db_path, folder, dispatch)
    from genre_local.pipeline.workers import ProcessDispatch, worker_slots

    gpus = visible_gpus()
    if gpus and scale.gpus > gpus:
        raise UserError(f"--gpus {scale.gpus}: only {gpus} GPU(s) visible here; use --gpus {gpus} or fewer")
    cores = os.cpu_count() or 2
    worker_options = per_worker_options(options, scale.gpus, cores, on_gpu=gpus > 0)
    dispatch = ProcessDispatch(BackendFactory(backend, worker_options), worker_slots(scale.gpus, gpus > 0, cores))
    return ShardedExecutor(db_path, folder, dispatch)
