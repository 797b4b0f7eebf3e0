"""The paper's grid in one resumable command: plan every (model, variant, source, seed) cell,
skip the stored ones, train the rest.

A variant that reads generations has one cell per generation source (`--llm`: the sources
named, `all` of them, or the only one stored), so "original vs ns from LLM A vs ns from LLM B"
is one grid; `original` reads none and is trained once. Each cell is one `genre-local train` of
one seed (genre_local/training.py), so it stores exactly like `train` and checkpoints where
`train` would. A cell whose run is stored (genre_local/run_match.py: the same model, dataset,
variant, features, ng_k, source, seed, data and settings) is skipped; a cell with a checkpoint
resumes from it. Three ways to execute the rest:

- sequential (default): in this process;
- `workers > 1`: separate spawned processes, each with its share of the cores (and one GPU each,
  round robin, where there are GPUs); each opens the store only briefly and waits for another's
  lock (DuckDB allows one writer);
- `engine="ray"`: the driver encodes each cell's data and writes its runs, Ray tasks train
  (num_cpus / num_gpus per cell), so workers on other machines never touch the store file.

Progress is one line per finished cell (done / total, ETA) through `on_cell`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from genre_local.errors import UserError
from genre_local.store.generations import GenerationSource, split_method
from recsys.catalog import MODEL_NAMES, MODEL_SPECIFIC_FIELDS
from recsys.config import TrainConfig
from recsys.errors import ConfigError
from recsys.variants import VariantSpec, parse_variant

ENGINES = ("local", "ray")
ALL_SOURCES = "all"  # --llm all: every stored source of each variant that reads generations


@dataclass(frozen=True)
class GridCell:
    """One run of the grid."""

    model: str
    variant: str  # the variant's canonical name (VariantSpec.name)
    seed: int
    source: GenerationSource | None = None  # the generations it reads; None for a variant that reads none

    @property
    def run_of(self) -> str:
        """What the cell is a seed of: model/variant, with the source where there is one."""
        return f"{self.model}/{self.variant}{f' ({self.source.label})' if self.source else ''}"

    @property
    def label(self) -> str:
        return f"{self.run_of}/seed {self.seed}"


@dataclass(frozen=True)
class GridSpec:
    """What the grid covers: models x (variant, source) x seeds, with one [train] configuration."""

    dataset: str
    models: tuple[str, ...]
    variants: tuple[VariantSpec, ...]
    config: TrainConfig  # its seed_list is the grid's seeds
    # variant name -> the sources its cells read (resolve_sources); a variant not here reads none
    sources: dict[str, tuple[GenerationSource, ...]] = dataclasses.field(default_factory=dict)

    def cells(self) -> list[GridCell]:
        return [GridCell(m, v.name, s, source) for m in self.models for v in self.variants
                for source in self.sources.get(v.name, (None,)) for s in self.config.seed_list]

    def variant(self, name: str) -> VariantSpec:
        return next(v for v in self.variants if v.name == name)


@dataclass(frozen=True)
class GridPlan:
    spec: GridSpec
    stored: dict[GridCell, str]  # cell -> the stored run that makes it done
    todo: list[GridCell]

    @property
    def total(self) -> int:
        return len(self.stored) + len(self.todo)


@dataclass(frozen=True)
class CellOutcome:
    """What executing one cell did (picklable: it comes back from worker processes)."""

    cell: GridCell
    run_ids: tuple[str, ...]  # runs stored now
    already_stored: tuple[str, ...]  # a finished checkpoint whose run was stored already
    auc: float | None
    eval_split: str | None
    resumed: bool
    seconds: float


@dataclass(frozen=True)
class GridProgress:
    done: int  # cells stored, skipped ones included
    total: int
    outcome: CellOutcome
    eta_s: float | None  # seconds left at the mean pace of the cells finished in this invocation


def parse_models(text: str) -> tuple[str, ...]:
    """`all` or a comma list of catalog names; an unknown name is a UserError naming it."""
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    if not names:
        raise UserError(f"--models is empty; use all or a comma list of {', '.join(MODEL_NAMES)}")
    if names == ["all"]:
        return tuple(MODEL_NAMES)
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise UserError(f"--models has an unknown model '{unknown[0]}'; use all or a comma list of {', '.join(MODEL_NAMES)}")
    return tuple(dict.fromkeys(names))


def parse_variants(text: str, ng_k: int) -> tuple[VariantSpec, ...]:
    """A comma list of variants (each may combine parts: ns+up+ng); a bad one is a UserError naming it."""
    specs: dict[str, VariantSpec] = {}
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise UserError("--variants is empty; use a comma list such as original,ns,up,ng,chain")
    for part in parts:
        try:
            spec = parse_variant(part, ng_k)
        except ConfigError as exc:
            raise UserError(f"--variants '{part}' {exc.problem}") from exc
        specs.setdefault(spec.name, spec)
    return tuple(specs.values())


def parse_llm(text: str | None) -> tuple[str, ...] | None:
    """--llm: None when not given; `all`, or a comma list of sources as `train --llm` takes them."""
    if text is None:
        return None
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not names:
        raise UserError("--llm is empty; use all or a comma list of sources (`genre-local generations list` shows them)")
    if ALL_SOURCES in names and len(names) > 1:
        raise UserError(f"--llm {text!r}: 'all' already names every source; pass it alone")
    return names


def resolve_sources(conn, dataset: str, variants: tuple[VariantSpec, ...],
                    wanted: tuple[str, ...] | None) -> dict[str, tuple[GenerationSource, ...]]:
    """Each variant that reads generations -> the sources its cells read: the only one stored
    (`wanted` None; several are the one-line error of `train`), every stored one (`all`), or one
    per name in `wanted`, each resolved as `train --llm` resolves it (an unknown name is a
    UserError listing the stored sources). A name with a profile method (LLM/SET+label) names
    its LLM/SET for a variant that reads no profile: ns and ng outputs have no method."""
    from genre_local.store.generations import PROFILE_DERIVED_TASKS, choose_source
    from genre_local.store.variants import resolve_source, stored_sources, variant_tasks

    enriched = [v for v in variants if variant_tasks(v)]
    if wanted is not None and not enriched:
        raise UserError(f"--llm {','.join(wanted)}: variants {', '.join(v.name for v in variants)} read no "
                        "generations; drop --llm")
    resolved: dict[str, tuple[GenerationSource, ...]] = {}
    for spec in enriched:
        if wanted is None:
            resolved[spec.name] = (resolve_source(conn, dataset, spec, None),)
            continue
        available = stored_sources(conn, dataset, spec)
        if wanted == (ALL_SOURCES,):
            resolved[spec.name] = tuple(available)
            continue
        profiled = any(t in PROFILE_DERIVED_TASKS for t in variant_tasks(spec))
        what = f"variant '{spec.name}' of dataset '{dataset}'"
        chosen = (choose_source(available, name if profiled else split_method(name)[0], what) for name in wanted)
        resolved[spec.name] = tuple(dict.fromkeys(chosen))
    return resolved


def plan_grid(conn, spec: GridSpec) -> GridPlan:
    """Which cells are stored already (genre_local/run_match.py: same identity, source, seed,
    data and settings), which are to run."""
    from genre_local.run_match import stored_run
    from genre_local.store.runs import RunIdentity
    from genre_local.store.variants import content_fingerprint
    from recsys.catalog import model_kind

    config = dataclasses.asdict(spec.config)
    features = ",".join(spec.config.feature_names)
    fingerprints: dict[tuple[str, GenerationSource | None], str] = {}
    stored: dict[GridCell, str] = {}
    for cell in spec.cells():
        variant = spec.variant(cell.variant)
        key = (cell.variant, cell.source)
        if key not in fingerprints:  # the rows the cell reads, as train_and_store fingerprints them
            fingerprints[key] = content_fingerprint(conn, spec.dataset, variant, cell.source)
        ident = RunIdentity(cell.model, model_kind(cell.model), spec.dataset, cell.variant, features, variant.ng_k)
        match = stored_run(conn, ident, cell.source, cell.seed, fingerprints[key], config, variant.up)
        if match is not None:
            stored[cell] = match
    return GridPlan(spec, stored, [c for c in spec.cells() if c not in stored])


@dataclass(frozen=True)
class CellJob:
    """Everything a worker needs to execute one cell (picklable)."""

    cell: GridCell
    spec: VariantSpec
    request_base: object  # a TrainRequest for the grid (model, seed and variant replaced per cell)
    threads: int

    def request(self):
        base = self.request_base
        config = dataclasses.replace(base.config, seed=self.cell.seed, seeds=1, threads=self.threads)
        if self.cell.model not in MODEL_SPECIFIC_FIELDS["encoder"]:  # as from `train`: no encoder
            config = dataclasses.replace(config, encoder="")
        source = self.cell.source  # resolved at planning; as --llm, train_and_store checks it again
        return dataclasses.replace(base, model=self.cell.model, spec=self.spec, config=config, resume=False,
                                   resume_hint="rerunning the grid", llm=source.label if source else None,
                                   source=source)


def run_cell(job: CellJob) -> CellOutcome:
    """Train and store one cell through train_and_store, resuming its checkpoint when it has one."""
    from genre_local.training import train_and_store
    from recsys.train import make_accelerator

    started = time.monotonic()
    accelerator = make_accelerator()
    request = job.request()
    request = dataclasses.replace(request, resume=_has_checkpoint(request, accelerator))
    outcome = train_and_store(request, accelerator=accelerator)
    result = outcome.experiment
    auc = result.runs[0].metrics[result.eval_split]["all"]["auc"] if result is not None else None
    return CellOutcome(job.cell, tuple(outcome.run_ids), tuple(outcome.already_stored.values()), auc,
                       result.eval_split if result is not None else None, request.resume, time.monotonic() - started)


def _has_checkpoint(request, accelerator) -> bool:
    """Whether the cell's checkpoint folder (as `train` keys it) holds a checkpoint to resume."""
    from genre_local.training import load_encoded_variant, open_existing_store
    from genre_local.store.runs import store_id
    from recsys import experiment

    data = load_encoded_variant(request, accelerator)  # cached tensors: train_and_store reloads them cheaply
    with open_existing_store(request.db_path, request.store_wait_s) as store:
        owner = store_id(store)
    return bool(experiment.resumable_seeds(request.model, data, request.config, request.checkpoint_root(owner)))


def _init_worker(slots, threads: int, gpus: list[str]) -> None:
    """In each spawned worker, before torch is imported: die with the parent (an orphan finishing
    a cell while the rerun trains it again would store it twice), one GPU per worker, its cores."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    slot = slots.get()
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def local_gpus() -> list[str]:
    """The GPU ids this process may use (CUDA_VISIBLE_DEVICES, else every visible CUDA device)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    return max(1, (cores or os.cpu_count() or 1) // max(1, workers))


def execute(plan: GridPlan, request_base, *, workers: int = 1, engine: str = "local",
            ray_address: str | None = None,
            on_cell: Callable[[GridProgress], None] = lambda progress: None) -> list[CellOutcome]:
    """Run the plan's cells; `on_cell` after each with done / total and an ETA. `ray_address`
    (engine "ray" only): a running cluster; None: RAY_ADDRESS, else a Ray started here."""
    if engine not in ENGINES:
        raise UserError(f"--engine {engine!r} is unknown; use one of {', '.join(ENGINES)}")
    if workers < 1:
        raise UserError(f"--workers must be 1 or more, got {workers}")
    threads = request_base.config.threads or threads_per_worker(workers)
    jobs = [CellJob(c, plan.spec.variant(c.variant), request_base, threads) for c in plan.todo]
    if engine == "ray":
        results = _execute_ray(jobs, workers, ray_address)
    elif workers == 1:
        results = (run_cell(job) for job in jobs)
    else:
        results = _execute_processes(jobs, workers, threads)
    outcomes: list[CellOutcome] = []
    started = time.monotonic()
    for outcome in results:
        outcomes.append(outcome)
        elapsed = time.monotonic() - started
        remaining = len(jobs) - len(outcomes)
        on_cell(GridProgress(len(plan.stored) + len(outcomes), plan.total, outcome,
                             elapsed / len(outcomes) * remaining))
    return outcomes


def _execute_processes(jobs: list[CellJob], workers: int, threads: int) -> Iterator[CellOutcome]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    if not jobs:
        return
    context = multiprocessing.get_context("spawn")  # never fork a process that has torch threads
    slots = context.SimpleQueue()  # worker slot numbers: which GPU each worker takes
    count = min(workers, len(jobs))
    for slot in range(count):
        slots.put(slot)
    jobs = [dataclasses.replace(j, request_base=dataclasses.replace(j.request_base, store_wait_s=600.0))
            for j in jobs]
    with ProcessPoolExecutor(count, mp_context=context, initializer=_init_worker,
                             initargs=(slots, threads, local_gpus())) as pool:
        pending = {pool.submit(run_cell, job) for job in jobs}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()  # a cell's error stops the grid; finished cells stay stored
        finally:
            for future in pending:
                future.cancel()


def _execute_ray(jobs: list[CellJob], workers: int, address: str | None) -> Iterator[CellOutcome]:
    """The driver encodes each cell and writes its runs; Ray tasks (num_cpus = their threads, one
    GPU each where the cluster has GPUs) train. Uses the running Ray, else the cluster at `address`
    (or RAY_ADDRESS), else a Ray started here."""
    try:
        import ray
    except ImportError as exc:
        raise UserError("--engine ray needs Ray (pip install 'ray[data]==2.60.0')") from exc
    from genre_local.pipeline.ray_engine import RayCluster, start_ray

    if not jobs:
        return
    # A local Ray gets one logical CPU per worker; a cluster keeps its own resources (Ray refuses
    # num_cpus when connecting to one).
    started_here = start_ray(RayCluster(address=address, replicas=workers,
                                        local_cpus=workers if workers > 1 else None))
    try:
        yield from _ray_cells(ray, jobs)
    finally:
        if started_here:
            ray.shutdown()


def _ray_cells(ray, jobs: list[CellJob]) -> Iterator[CellOutcome]:
    from genre_local.store.runs import store_id
    from genre_local.training import chain_cohorts, load_encoded_variant, open_existing_store, store_experiment
    from recsys import experiment
    from recsys.train import make_accelerator

    resources = ray.cluster_resources()
    gpus = 1 if resources.get("GPU", 0) >= 1 else 0
    train_remote = ray.remote(_ray_train)
    accelerator = make_accelerator()
    encoded: dict[tuple, tuple[object, object]] = {}  # (variant, source) -> (data, its object ref): one copy each
    started: dict = {}
    with open_existing_store(jobs[0].request().db_path, wait_s=60.0) as store:
        owner = store_id(store)
    for job in jobs:
        request = job.request()
        key = (job.cell.variant, job.cell.source)
        if key not in encoded:
            data = load_encoded_variant(request, accelerator)
            encoded[key] = (data, ray.put(data))
        data, data_ref = encoded[key]
        root = request.checkpoint_root(owner)
        resume = bool(experiment.resumable_seeds(request.model, data, request.config, root))
        with open_existing_store(request.db_path, wait_s=60.0) as store:
            cohorts = chain_cohorts(store.conn, request)  # Table 7's Chain cohorts, as train_and_store
        # A task asking for more CPUs than the cluster has would wait forever.
        cpus = max(1, min(job.threads, int(resources.get("CPU", 1))))
        ref = train_remote.options(num_cpus=cpus, num_gpus=gpus).remote(
            request.model, data_ref, request.config, root, resume, owner, cohorts)
        started[ref] = (job, request, data, root, resume, time.monotonic())
    pending = list(started)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        job, request, data, root, resume, since = started.pop(ready[0])
        result = ray.get(ready[0])
        run_ids, _ = store_experiment(request, data, result, root)
        yield CellOutcome(job.cell, tuple(run_ids), (), result.runs[0].metrics[result.eval_split]["all"]["auc"],
                          result.eval_split, resume, time.monotonic() - since)


def _ray_train(model: str, data, config: TrainConfig, root: Path, resume: bool, owner: str, cohorts=None):
    """A Ray task: one seed's training with its checkpoints under `root` (shared storage across machines)."""
    from recsys import experiment
    from recsys.train import make_accelerator, set_threads

    accelerator = make_accelerator()
    set_threads(config.threads, accelerator)
    return experiment.run(model, data, config, checkpoint_root=root, resume=resume, owner=owner,
                          seeds=config.seed_list, accelerator=accelerator, cohorts=cohorts)
