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
    checkpoint_root: Path
    image_file: Path | None = None
    resume: bool = False


@dataclass
class TrainOutcome:
    experiment: ExperimentResult
    run_ids: list[str]
    p_value: float | None
    paired_seeds: int


def load_encoded_variant(request: TrainRequest, accelerator) -> EncodedDataset:
    """The variant's tensors on every process: rank 0 reads the store and builds (or finds) the
    cached tensors with the store closed; the other ranks load the same cache file."""
    from genre_local.store import open_store
    from genre_local.store.variants import plan_encoded
    from recsys.data import EncodingOptions
    from recsys.experiment import share_encoded

    cfg = request.config
    options = EncodingOptions(cfg.feature_names, cfg.title_len, cfg.abstract_len, request.image_file)

    def build():
        if not Path(request.db_path).exists():
            raise UserError(f"store {request.db_path} does not exist; import a dataset first (genre-local data import)")
        with open_store(request.db_path) as store:
            store.require_dataset(request.dataset)
            plan = plan_encoded(store.conn, request.dataset, request.spec, options, request.cache_dir)
        return plan.build()  # tokenizing with the store closed

    return share_encoded(accelerator, build, user_errors=(UserError, RecsysError))


def train_and_store(request: TrainRequest, *, accelerator=None, progress=None,
                    say: Callable[[str], None] = lambda text: None) -> TrainOutcome | None:
    """Train every seed, store the runs (rank 0), and test against the stored `original` runs."""
    from genre_local.store.runs import (
        RunIdentity, new_experiment_id, open_store_waiting, original_auc_by_seed, write_runs,
    )
    from recsys import experiment
    from recsys.train import make_accelerator, set_threads

    accelerator = accelerator or make_accelerator()
    set_threads(request.config.threads, accelerator)  # before encoding: tokenizers and torch share the cores
    data = load_encoded_variant(request, accelerator)
    cfg, spec = request.config, request.spec
    if request.resume and not experiment.resumable_seeds(request.model, data, cfg, request.checkpoint_root):
        raise UserError(f"--resume: no checkpoint of {request.model} on {request.dataset}/{spec.name} under "
                        f"{request.checkpoint_root}; train without --resume first")
    if accelerator.is_main_process:
        stats = ", ".join(f"{k} {v:,}" for k, v in data.stats.items() if v)
        say(f"[bold]{request.model}[/] on {request.dataset} / {spec.name} ({stats}); "
            f"{accelerator.num_processes} process(es) on {accelerator.device}")

    def on_seed(result) -> None:
        if accelerator.is_main_process:
            auc = result.metrics[result.eval_split]["all"]["auc"]
            rate = sum(result.train_samples_per_s) / max(len(result.train_samples_per_s), 1)
            stopped = f"stopped on {result.stop_split}" if result.stop_split else "no early stopping"
            say(f"seed {result.seed}: {result.eval_split} auc {auc:.4f} ({stopped}, best epoch {result.best_epoch}"
                f"/{result.epochs_run}, {rate:,.0f} samples/s)")

    try:
        result = experiment.run(request.model, data, cfg, checkpoint_root=request.checkpoint_root,
                                resume=request.resume, accelerator=accelerator, progress=progress, on_seed=on_seed)
    except CheckpointError as exc:
        raise UserError(f"--resume: {exc}; train without --resume first" if request.resume else str(exc)) from exc
    except KeyboardInterrupt:
        if accelerator.is_main_process:
            say(f"checkpoint saved in {request.checkpoint_root}; the same command with --resume continues it")
        raise
    if not accelerator.is_main_process:
        return None

    ident = RunIdentity(model=request.model, kind=model_kind(request.model), dataset=request.dataset,
                        variant=spec.name, features=",".join(cfg.feature_names), ng_k=spec.ng_k)
    config = dataclasses.asdict(cfg) | {"variant": spec.name, "seeds": [r.seed for r in result.runs],
                                        "image_file": str(request.image_file) if request.image_file else None}
    try:
        with open_store_waiting(request.db_path) as store:
            run_ids = write_runs(store, new_experiment_id(), ident, config, data.fingerprint, data.stats,
                                 result.device, result.runs)
            baseline = original_auc_by_seed(store, ident, result.eval_split, result.stop_split) if spec.name != "original" else {}
    except StoreError as exc:
        raise UserError(
            f"{exc}; the trained weights are kept in {request.checkpoint_root}: the same command with "
            "--resume stores the runs without training again"
        ) from exc
    p_value, pairs = result.p_value_against(baseline) if baseline else (None, 0)
    return TrainOutcome(result, run_ids, p_value, pairs)


def predict_to_file(request: TrainRequest, out: Path, split: str = "test") -> Prediction:
    """A MIND leaderboard file from the best weights of the seed `request.config.seed`."""
    from recsys import experiment
    from recsys.train import find_checkpoint, make_accelerator, set_threads

    accelerator = make_accelerator()
    if accelerator.num_processes > 1:
        raise UserError("predict runs in one process; start it without accelerate launch")
    set_threads(request.config.threads, accelerator)
    data = load_encoded_variant(request, accelerator)
    cfg = request.config
    folder = experiment.run_settings(request.model, data, cfg, cfg.seed, request.checkpoint_root).checkpoint_dir
    if split in data.splits and find_checkpoint(folder) is None:
        raise UserError(
            f"no trained checkpoint in {folder}; run `genre-local train --model {request.model} --dataset "
            f"{request.dataset} --variant {request.spec.name}` with the same options first"
        )
    return experiment.predict(request.model, data, cfg, out, checkpoint_root=request.checkpoint_root, split=split)
