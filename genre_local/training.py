"""The recommender stage on the genre-local side: store rows -> recsys -> stored runs.

`train_and_store` and `predict_to_file` are what `genre-local train` / `predict` call: they read
the dataset variant through the store adapter (genre_local/store/variants.py), hand it to the
recsys library (`recsys.experiment`), and write the runs through genre_local/store/runs.py,
retrying a while when another command holds the store's lock. The store is opened briefly
before and after training, never during it (DuckDB allows a single writing process).

Under `accelerate launch` every process calls the same function: rank 0 alone reads and writes
the store; the others get the encoded data through the cache file and return None.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from genre_local.errors import StoreError, UserError
from recsys.catalog import model_kind
from recsys.config import TrainConfig
from recsys.errors import CheckpointError, RecsysError
from recsys.variants import VariantSpec

if TYPE_CHECKING:
    from genre_local.store.generations import GenerationSource
    from genre_local.store.runs import RunIdentity
    from recsys.data import EncodedDataset
    from recsys.experiment import ExperimentResult, Prediction


@dataclass(frozen=True)
class TrainRequest:
    """One `genre-local train` (or `predict`): which model on which dataset variant, how."""

    db_path: Path
    model: str
    dataset: str
    spec: VariantSpec
    config: TrainConfig
    cache_dir: Path  # tensorized datasets
    checkpoint_base: Path  # checkpoints live in <checkpoint_base>/<store id>/ (checkpoint_root)
    image_file: Path | None = None
    resume: bool = False
    retrain: bool = False  # train a seed again though the same run is stored (genre_local/run_match.py)
    run_id: str | None = None  # predict: the stored run whose weights to use
    store_wait_s: float = 0.0  # wait this long for another process's store lock (grid workers share one store)
    resume_hint: str = "the same command with --resume"  # what continues this request's checkpoints
    track_dir: Path | None = None  # train: the tracker's files (config.track names it); None: not tracked
    llm: str | None = None  # --llm: which generation source a non-original variant reads
    source: GenerationSource | None = None  # resolved from `llm` and the store (None for original)

    def checkpoint_root(self, owner: str) -> Path:
        """Where this request's checkpoints live: <checkpoint_base>/<store id>/, and a folder per
        generation source below it for a variant that reads one. recsys keys a checkpoint by model,
        variant, features, settings and seed, not by whose generations the variant read: without
        it, ns from two LLMs would share one checkpoint, the second resuming or overwriting the first."""
        root = self.checkpoint_base / owner
        if self.source is None:
            return root
        import hashlib

        from recsys.data import safe_name

        label = self.source.label
        return root / f"source-{safe_name(label)[:60]}-{hashlib.sha256(label.encode()).hexdigest()[:8]}"

    def tracking(self):
        """The recsys.tracking.Tracking of this training; None when it is not tracked."""
        from recsys.experiment import experiment_tracking

        return experiment_tracking(self.config, self.track_dir)

    def ident(self) -> RunIdentity:
        from genre_local.store.runs import RunIdentity

        return RunIdentity(model=self.model, kind=model_kind(self.model), dataset=self.dataset,
                           variant=self.spec.name, features=",".join(self.config.feature_names), ng_k=self.spec.ng_k)


@dataclass(frozen=True)
class SeedResult:
    """One seed a train command asked for, as the store holds it (the numbers `report` counts):
    trained by this command, or stored before and not trained again."""

    seed: int
    run_id: str
    trained: bool  # False: stored before (the same run: run_match.py), not trained again
    metrics: dict[str, dict[str, float]]  # user group -> metric -> value on the reported split
    # A kept run that a newer run of its configuration and seed (other settings) supersedes:
    # `report` counts that newer run instead (report/runs.py).
    superseded_by: str | None = None
    autocast: str | None = None  # "bfloat16" | "float32" as trained; None: stored before it was recorded

    @property
    def auc(self) -> float | None:
        return self.metrics.get("all", {}).get("auc")


@dataclass(frozen=True)
class SeedTable:
    """Every seed of a train command, its reported split and its paired t-test against `original`."""

    seeds: list[SeedResult]  # in seed order
    eval_split: str | None
    stop_split: str | None
    p_value: float | None
    paired_seeds: int
    # Seeds whose stored `original` runs were all trained with other settings, left unpaired: why.
    unpaired_note: str | None = None

    def summary(self) -> dict[str, dict[str, tuple[float, float | None]]]:
        """group -> metric -> (mean, sample std; None with one seed) over the seeds that have the
        value (recsys.stats.mean_std, as `report`); groups no seed reports are left out."""
        from recsys.catalog import METRICS, USER_GROUPS
        from recsys.stats import mean_std

        return {
            group: {metric: mean_std([s.metrics[group][metric] for s in self.seeds if metric in s.metrics.get(group, {})])
                    for metric in METRICS}
            for group in USER_GROUPS
            if any(group in s.metrics for s in self.seeds)
        }


@dataclass
class TrainOutcome:
    experiment: ExperimentResult | None  # None: every seed was finished and stored already
    run_ids: list[str]  # stored by this command
    table: SeedTable  # every seed asked for: the trained ones and those stored before
    already_stored: dict[int, str] = dataclasses.field(default_factory=dict)  # seed -> run id
    source: GenerationSource | None = None  # the generation source the variant read

    @property
    def p_value(self) -> float | None:  # over every seed asked for
        return self.table.p_value

    @property
    def paired_seeds(self) -> int:
        return self.table.paired_seeds


@dataclass(frozen=True)
class _SeedPlan:
    owner: str  # the store's id
    checkpoint_root: Path
    seeds: list[int]  # to train (or to finish and store)
    already_stored: dict[int, str]
    resume: bool  # some of `seeds` have a checkpoint to continue
    cohorts: dict | None = None  # Chain-cohort group -> split -> impression ids (evaluation only)


def load_encoded_variant(request: TrainRequest, accelerator) -> EncodedDataset:
    """The variant's tensors on every process: rank 0 reads the store and builds (or finds) the
    cached tensors with the store closed; the other ranks load the same cache file."""
    from genre_local.store.variants import plan_encoded
    from recsys.data import EncodingOptions
    from recsys.experiment import share_encoded

    cfg = request.config
    options = EncodingOptions(cfg.feature_names, cfg.title_len, cfg.abstract_len, request.image_file)

    def build():
        with open_existing_store(request.db_path, request.store_wait_s) as store:
            store.require_dataset(request.dataset)
            plan = plan_encoded(store.conn, request.dataset, request.spec, options, request.cache_dir,
                                request.source)
        return plan.build()  # tokenizing with the store closed

    return share_encoded(accelerator, build, user_errors=(UserError, RecsysError))


def with_source(request: TrainRequest) -> TrainRequest:
    """The request with its generation source resolved against the store (`--llm`, or the only
    source stored; UserError listing them when several are). Opens the store briefly, waiting
    `store_wait_s` for another process's lock (two grid workers start their cells together)."""
    from genre_local.store.variants import resolve_source

    with open_existing_store(request.db_path, request.store_wait_s) as store:
        store.require_dataset(request.dataset)
        source = resolve_source(store.conn, request.dataset, request.spec, request.llm)
    return dataclasses.replace(request, source=source)


def open_existing_store(db_path: Path, wait_s: float = 0.0):
    """The store, which must exist; with `wait_s`, waiting that long while another process holds its lock."""
    from genre_local.store import open_store
    from genre_local.store.runs import open_store_waiting

    if not Path(db_path).exists():
        raise UserError(f"store {db_path} does not exist; import a dataset first (genre-local data import)")
    return open_store_waiting(db_path, wait_s=wait_s, poll_s=0.5) if wait_s > 0 else open_store(db_path)


def _plan_seeds(request: TrainRequest, data: EncodedDataset) -> _SeedPlan:
    """Rank 0, store open briefly: the store's id, and which seeds still need work. A seed whose
    run is stored (the same run: genre_local/run_match.py) is not trained again unless
    --retrain, so a repeated command does not store a second copy of a run; with --resume, a
    finished checkpoint whose run is stored is not stored again, and a seed with a checkpoint to
    continue is continued."""
    from genre_local.run_match import stored_run
    from genre_local.store.runs import run_stored_from, store_id
    from recsys import experiment
    from recsys.train import find_checkpoint, read_loop_state

    cfg = request.config
    with open_existing_store(request.db_path, request.store_wait_s) as store:
        owner = store_id(store)
        root = request.checkpoint_root(owner)
        stored: dict[int, str] = {}
        resumable = experiment.resumable_seeds(request.model, data, cfg, root) if request.resume else []
        if request.resume:
            if not resumable:
                raise UserError(f"--resume: no checkpoint of {request.model} on {request.dataset}/{request.spec.name} "
                                f"under {root}; train without --resume first")
            for seed in cfg.seed_list:
                folder = experiment.checkpoint_folder(root, request.model, data, cfg, seed)
                found = find_checkpoint(folder)
                state = read_loop_state(found) if found is not None else None
                if state is not None and state.finished(cfg.epochs):
                    run_id = run_stored_from(store, folder, len(state.epoch_seconds), data.fingerprint)
                    if run_id is not None:
                        stored[seed] = run_id
        if not request.retrain:
            config = dataclasses.asdict(cfg) | {"image_file": str(request.image_file) if request.image_file else None}
            for seed in cfg.seed_list:
                if seed not in stored and seed not in resumable:
                    run_id = stored_run(store.conn, request.ident(), request.source, seed, data.fingerprint, config,
                                        request.spec.up)
                    if run_id is not None:
                        stored[seed] = run_id
        cohorts = chain_cohorts(store.conn, request)
    seeds = [s for s in cfg.seed_list if s not in stored]
    return _SeedPlan(owner, root, seeds, stored, resume=any(s in resumable for s in seeds), cohorts=cohorts)


# The columns of GENRE Table 7 (original, one-pass ng, chain): evaluated on the Chain cohort too.
_CHAIN_TABLE_VARIANTS = ("original", "ng", "chain")


def chain_cohorts(conn, request: TrainRequest) -> dict | None:
    """The Chain cohorts a run of Table 7's variants is also evaluated on: for `original`, one per
    source with valid profiles; for chain, its own source's; for ng, which reads no profile, one
    per profile method of its LLM and prompt set (the chain it is compared with may be of any).
    None for other variants."""
    from genre_local.store.enrichment import chain_cohort_group, chain_cohort_impressions, profile_sources

    if request.spec.name not in _CHAIN_TABLE_VARIANTS:
        return None
    sources = profile_sources(conn, request.dataset)
    if request.source is not None:
        own = request.source
        sources = ([own] if request.spec.name == "chain"
                   else [s for s in sources if (s.llm, s.prompt_set) == (own.llm, own.prompt_set)])
    cohorts = {chain_cohort_group(s.label): chain_cohort_impressions(conn, request.dataset, s) for s in sources}
    return cohorts or None


def _on_rank0(accelerator, work: Callable[[], object]):
    """`work()` on rank 0, its value (or its error) on every rank."""
    if accelerator.num_processes == 1:
        return work()
    from accelerate.utils import broadcast_object_list

    box: list[object] = [None, None, False]
    if accelerator.is_main_process:
        try:
            box[0] = work()
        except Exception as exc:
            box[1], box[2] = str(exc), isinstance(exc, (UserError, RecsysError))
            broadcast_object_list(box)
            raise
    broadcast_object_list(box)
    if box[1] is not None:
        raise (UserError if box[2] else RuntimeError)(str(box[1]))
    return box[0]


def train_and_store(request: TrainRequest, *, accelerator=None, progress=None,
                    say: Callable[[str], None] = lambda text: None) -> TrainOutcome | None:
    """Train every seed, store the runs (rank 0), and test against the stored `original` runs.
    Returns None on the other ranks."""
    from recsys import experiment
    from recsys.cpu import use_bf16
    from recsys.train import make_accelerator, set_threads

    accelerator = accelerator or make_accelerator(tracking=request.tracking())
    set_threads(request.config.threads, accelerator)  # before encoding: tokenizers and torch share the cores
    request = _on_rank0(accelerator, lambda: with_source(request))
    data = load_encoded_variant(request, accelerator)
    cfg, spec = request.config, request.spec
    plan: _SeedPlan = _on_rank0(accelerator, lambda: _plan_seeds(request, data))
    if not plan.seeds:
        if not accelerator.is_main_process:
            return None
        with open_existing_store(request.db_path, request.store_wait_s) as store:
            table = seed_table(store, request, [], plan.already_stored)
        return TrainOutcome(None, [], table, plan.already_stored, request.source)
    if accelerator.is_main_process:
        stats = ", ".join(f"{k} {v:,}" for k, v in data.stats.items() if v)
        by = f" from {request.source.label}" if request.source is not None else ""
        autocast = ""
        if use_bf16(cfg.bf16, accelerator.device.type, model=request.model):
            native = " (auto: native bf16 CPU)" if cfg.bf16 == "auto" and accelerator.device.type == "cpu" else ""
            autocast = f", bfloat16 autocast{native}"
        # an approximation of the training gradient is said, never left to the config file
        history = f", history news {cfg.plmnr_history}" if request.model == "plmnr" and cfg.plmnr_history != "exact" else ""
        say(f"[bold]{request.model}[/] on {request.dataset} / {spec.name}{by} ({stats}); "
            f"{accelerator.num_processes} process(es) on {accelerator.device}{autocast}{history}")

    def on_seed(result) -> None:
        if accelerator.is_main_process:
            auc = result.metrics[result.eval_split]["all"]["auc"]
            rate = sum(result.train_samples_per_s) / max(len(result.train_samples_per_s), 1)
            stopped = f"stopped on {result.stop_split}" if result.stop_split else "no early stopping"
            say(f"seed {result.seed}: {result.eval_split} auc {auc:.4f} ({stopped}, best epoch {result.best_epoch}"
                f"/{result.epochs_run}, {rate:,.0f} samples/s)")

    try:
        result = experiment.run(request.model, data, cfg, checkpoint_root=plan.checkpoint_root, resume=plan.resume,
                                owner=plan.owner, seeds=plan.seeds, accelerator=accelerator, progress=progress,
                                on_seed=on_seed, layer_cache_dir=request.cache_dir / "layers",
                                track_dir=request.track_dir, cohorts=plan.cohorts)
    except CheckpointError as exc:
        raise UserError(f"--resume: {exc}" if request.resume else str(exc)) from exc
    except KeyboardInterrupt:
        if accelerator.is_main_process:
            say(f"checkpoint saved in {plan.checkpoint_root}; {request.resume_hint} continues it")
        raise
    if not accelerator.is_main_process:
        return None

    run_ids, table = store_experiment(request, data, result, plan.checkpoint_root, plan.already_stored)
    return TrainOutcome(result, run_ids, table, plan.already_stored, request.source)


def seed_table(store, request: TrainRequest, run_ids: list[str], already_stored: dict[int, str]) -> SeedTable:
    """Every seed of the command read back from the store: `run_ids` trained now and the runs of
    `already_stored` (seed -> run id) kept; the paired t-test of their AUC against the stored
    `original` runs of the same protocol and settings (none for `original` itself), and why
    seeds were left unpaired where the only original runs stored were trained otherwise."""
    from genre_local.store.runs import OriginalBaseline, latest_run, load_seed_metrics, original_baseline
    from recsys.stats import paired_p_value

    trained = set(run_ids)
    read = load_seed_metrics(store, [*run_ids, *already_stored.values()])

    def newer(run_id: str, seed: int) -> str | None:
        latest = latest_run(store, request.ident(), seed, request.source)
        return latest.run_id if latest is not None and latest.run_id != run_id else None

    seeds = sorted((SeedResult(r.seed, r.run_id, r.run_id in trained, r.metrics,
                               None if r.run_id in trained else newer(r.run_id, r.seed), r.autocast) for r in read),
                   key=lambda r: r.seed)
    # The runs trained now decide the protocol and the settings; kept runs are the same run, so
    # they share them.
    first = next((r for r in read if r.run_id in trained), read[0] if read else None)
    eval_split, stop_split = (first.eval_split, first.stop_split) if first is not None else (None, None)
    baseline = (original_baseline(store, request.ident(), eval_split, stop_split, first.config)
                if first is not None and request.spec.name != "original" else OriginalBaseline({}, {}))
    pairs = [s for s in seeds if s.auc is not None and s.seed in baseline.auc_by_seed]
    p_value = paired_p_value([s.auc for s in pairs], [baseline.auc_by_seed[s.seed] for s in pairs]) if pairs else None
    return SeedTable(seeds, eval_split, stop_split, p_value, len(pairs), _unpaired_note(seeds, baseline))


def _unpaired_note(seeds: list[SeedResult], baseline) -> str | None:
    """Why seeds with stored `original` runs were left out of the t-test: none of those runs was
    trained with the variant's settings (which settings differ). None when none was left out."""
    from genre_local.run_match import seed_span

    unpaired = {s.seed: baseline.other_settings[s.seed] for s in seeds if s.seed in baseline.other_settings}
    if not unpaired:
        return None
    names = sorted({n for differ in unpaired.values() for n in differ})
    return (f"no stored original run trained with these settings for {seed_span(sorted(unpaired))} (those stored "
            f"differ in {', '.join(names)}): not paired; train --variant original with the same options to pair them")


def store_experiment(request: TrainRequest, data: EncodedDataset, result: ExperimentResult, checkpoint_root: Path,
                     already_stored: dict[int, str] | None = None) -> tuple[list[str], SeedTable]:
    """Write an experiment's runs (waiting a while for the store lock), then read them back with
    the seeds `already_stored` kept (seed -> run id), tested against the stored `original` runs:
    (run ids, SeedTable). Also the grid's driver-side write."""
    from genre_local.store.runs import new_experiment_id, open_store_waiting, write_runs

    cfg, spec = request.config, request.spec
    ident = request.ident()
    config = dataclasses.asdict(cfg) | {"variant": spec.name, "seeds": [r.seed for r in result.runs],
                                        "image_file": str(request.image_file) if request.image_file else None}
    try:
        with open_store_waiting(request.db_path, wait_s=max(120.0, request.store_wait_s)) as store:
            run_ids = write_runs(store, new_experiment_id(), ident, config, data.fingerprint, data.stats,
                                 result.device, result.runs, result.checkpoint_folders, source=request.source)
            table = seed_table(store, request, run_ids, already_stored or {})
    except StoreError as exc:
        raise UserError(
            f"{exc}; the trained weights are kept in {checkpoint_root}: {request.resume_hint} "
            "stores the runs without training again"
        ) from exc
    return run_ids, table


def predict_to_file(request: TrainRequest, out: Path, split: str = "test") -> tuple[Prediction, str]:
    """A MIND leaderboard file from the best weights of a stored run: `request.run_id`, or the
    newest run of the request's model, variant, features and seed. Returns it and the run's id.
    The run's checkpoint must belong to this store and match the settings and the store's rows."""
    from genre_local.store.runs import find_run, latest_run, store_id
    from recsys import experiment
    from recsys.train import find_checkpoint, make_accelerator, set_threads

    accelerator = make_accelerator()
    if accelerator.num_processes > 1:
        raise UserError("predict runs in one process; start it without accelerate launch")
    set_threads(request.config.threads, accelerator)
    with open_existing_store(request.db_path) as store:
        store.require_dataset(request.dataset)
        owner = store_id(store)
        if request.run_id is not None:
            run = find_run(store, request.run_id)
            if run is None:
                raise UserError(f"--run {request.run_id}: no such run in store {request.db_path}")
        else:
            from genre_local.store.variants import resolve_source

            request = dataclasses.replace(
                request, source=resolve_source(store.conn, request.dataset, request.spec, request.llm))
            run = latest_run(store, request.ident(), request.config.seed, request.source)
            if run is None:
                raise UserError(
                    f"no stored run of {request.model} on {request.dataset}/{request.spec.name} (seed "
                    f"{request.config.seed}, features {request.ident().features}); run `genre-local train --model "
                    f"{request.model} --dataset {request.dataset} --variant {request.spec.name}` with the same options first"
                )
    if request.run_id is not None:
        request = _request_of_run(request, run)
    data = load_encoded_variant(request, accelerator)
    folder = run.checkpoint or experiment.checkpoint_folder(request.checkpoint_root(owner), request.model, data,
                                                            request.config, run.seed)
    if find_checkpoint(folder) is None:
        raise UserError(f"run {run.run_id}: its checkpoint {folder} is gone; train it again to predict")
    try:
        written = experiment.predict(request.model, data, request.config, out, checkpoint=folder, split=split,
                                     seed=run.seed, owner=owner)
    except CheckpointError as exc:
        raise UserError(f"run {run.run_id}: {exc}") from exc
    return written, run.run_id


def _request_of_run(request: TrainRequest, run) -> TrainRequest:
    """--run: the run's own variant, features and settings; the flags must name its model and dataset."""
    from recsys.variants import parse_variant

    if (run.ident.model, run.ident.dataset) != (request.model, request.dataset):
        raise UserError(f"--run {run.run_id} is a {run.ident.model} run on {run.ident.dataset}, not "
                        f"{request.model} on {request.dataset}; pass its --model and --dataset")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in run.config.items() if k in fields} | {"seed": run.seed, "seeds": 1})
    image = run.config.get("image_file")
    return dataclasses.replace(request, spec=parse_variant(run.ident.variant, run.ident.ng_k), config=config,
                               image_file=Path(image) if image else request.image_file, source=run.source)
