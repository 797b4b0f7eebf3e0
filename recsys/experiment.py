"""Experiments: several seeds of one (model, dataset variant), with checkpoints and resume,
mean ± std over seeds, and MIND prediction files. The library API a notebook calls:

    data = ...                                   # an EncodedDataset (recsys.data.encode_variant)
    result = recsys.experiment.run("nrms", data, TrainConfig(seeds=3), checkpoint_root=Path("ck"))
    result.summary["all"]["auc"]                 # (mean, std) over seeds
    recsys.experiment.run(..., track_dir=Path("tb"))  # curves to config.track (default tensorboard)
    recsys.experiment.predict("nrms", data, TrainConfig(), Path("prediction.txt"), checkpoint_root=Path("ck"))

Under `accelerate launch` every process calls `run` with the same arguments (`share_encoded`
gives every rank the same encoded data); each process trains its shard and all get the results.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from recsys import stats
from recsys.catalog import METRICS, MODEL_NAMES, USER_GROUPS
from recsys.config import TrainConfig

if TYPE_CHECKING:
    import numpy as np
from recsys.data import EncodedDataset, load_encoded, safe_name
from recsys.errors import CheckpointError, ConfigError, RecsysError
from recsys.tracking import Tracking, finish_run, start_run
from recsys.train import (
    RunResult, RunSettings, check_checkpoint, find_checkpoint, make_accelerator, read_loop_state, run_training,
    set_threads,
)

__all__ = [
    "ExperimentResult", "Prediction", "checkpoint_folder", "experiment_tracking", "model_config", "predict", "resumable_seeds", "run",
    "run_settings", "share_encoded", "tracker_run_name",
]


@dataclass
class ExperimentResult:
    """Every seed's run of one model on one dataset variant."""

    model: str
    dataset: str
    variant: str
    runs: list[RunResult]
    checkpoint_folders: list[Path | None]
    processes: int
    device: str

    @property
    def eval_split(self) -> str:
        return self.runs[0].eval_split

    @property
    def stop_split(self) -> str | None:
        """The split early stopping scored ("dev" | "train-holdout"), None without early stopping."""
        return self.runs[0].stop_split

    @property
    def summary(self) -> dict[str, dict[str, tuple[float, float | None]]]:
        """group -> metric -> (mean, sample std; None with one seed) on each run's reported split.

        Groups no run reports ("empty" on a dataset where every user has a history) are left out."""
        return {
            group: {metric: stats.mean_std([r.metrics[r.eval_split][group][metric] for r in self.runs
                                            if group in r.metrics[r.eval_split]])
                    for metric in METRICS}
            for group in USER_GROUPS
            if any(group in r.metrics[r.eval_split] for r in self.runs)
        }

    def auc_by_seed(self) -> dict[int, float]:
        return {r.seed: r.metrics[r.eval_split]["all"]["auc"] for r in self.runs}

    def p_value_against(self, baseline_auc_by_seed: dict[int, float]) -> tuple[float | None, int]:
        """Paired t-test on AUC over the seeds both sides have: (p-value or None, pairs)."""
        seeds = [s for s in self.auc_by_seed() if s in baseline_auc_by_seed]
        ours = self.auc_by_seed()
        return stats.paired_p_value([ours[s] for s in seeds], [baseline_auc_by_seed[s] for s in seeds]), len(seeds)


def model_config(config: TrainConfig, use_profile: bool):
    """The models' hyper-parameters from the training settings."""
    from recsys.models import ModelConfig

    return ModelConfig(
        embed_dim=config.embed_dim, num_heads=config.num_heads, transformer_layers=config.transformer_layers,
        dropout=config.dropout, history_len=config.history_len, title_len=config.title_len,
        abstract_len=config.abstract_len, features=config.feature_names, use_profile=use_profile,
        lora_rank=config.lora_rank, encoder=config.encoder or None, interest_fusion=config.interest_fusion,
        plmnr_history=config.plmnr_history,
    )


def checkpoint_folder(root: Path, model: str, data: EncodedDataset, config: TrainConfig, seed: int) -> Path:
    """One folder per (model, dataset, variant, ng_k, features, settings, seed) under `root`: runs
    with other settings never share (or overwrite) a checkpoint."""
    variant = data.variant.replace("+", "_")
    ng_k = config.ng_k if {"ng", "chain"} & set(data.variant.split("+")) else 0
    features = "_".join(config.feature_names)
    key = run_settings(model, data, config, seed).settings_key()
    return Path(root) / f"{model}-{safe_name(data.dataset)}-{variant}-k{ng_k}-{features}-{key}-seed{seed}"


def run_settings(model: str, data: EncodedDataset, config: TrainConfig, seed: int,
                 checkpoint_root: Path | None = None, resume: bool = False, owner: str = "",
                 layer_cache_dir: Path | None = None,
                 cohorts: dict[str, dict[str, np.ndarray]] | None = None) -> RunSettings:
    """One seed's RunSettings; `resume` continues the seed's checkpoint when it has one.
    `layer_cache_dir`: where PLMNR/DIRE keep their frozen layers' states (None: in memory)."""
    settings = RunSettings(
        model=model, seed=seed, epochs=config.epochs, batch_size=config.batch_size,
        eval_batch_size=config.eval_batch_size, lr=config.lr, weight_decay=config.weight_decay,
        negatives=config.negatives, patience=config.patience, history_len=config.history_len,
        model_config=model_config(config, data.profiles is not None), checkpoint_every=config.checkpoint_every,
        num_workers=config.num_workers, fast_eval=config.fast_eval, owner=owner, layer_cache_dir=layer_cache_dir,
        holdout_fraction=config.holdout_fraction,
        bf16=config.bf16, optimizer=config.optimizer, decay_scope=config.decay_scope, cohorts=cohorts,
        max_steps=config.max_steps, report_split=config.report_split,
    )
    if checkpoint_root is None:
        return settings
    folder = checkpoint_folder(checkpoint_root, model, data, config, seed)
    return dataclasses.replace(settings, checkpoint_dir=folder, resume=resume and find_checkpoint(folder) is not None)


def resumable_seeds(model: str, data: EncodedDataset, config: TrainConfig, checkpoint_root: Path) -> list[int]:
    """The seeds of `config` that have a checkpoint to resume under `checkpoint_root`."""
    return [s for s in config.seed_list
            if find_checkpoint(checkpoint_folder(checkpoint_root, model, data, config, s)) is not None]


def run(
    model: str,
    data: EncodedDataset,
    config: TrainConfig,
    *,
    checkpoint_root: Path | None = None,
    resume: bool = False,
    owner: str = "",
    seeds: list[int] | None = None,
    accelerator=None,
    progress=None,
    on_seed: Callable[[RunResult], None] | None = None,
    layer_cache_dir: Path | None = None,
    track_dir: Path | None = None,
    cohorts: dict[str, dict[str, np.ndarray]] | None = None,
) -> ExperimentResult:
    """Train `config.seeds` seeds (from `config.seed`, or exactly `seeds`) and evaluate each.

    With `checkpoint_root`, each seed checkpoints into its own folder; `resume` continues the
    seeds that have a checkpoint (CheckpointError when none has one). `owner` names whose data
    the checkpoints belong to (resume refuses another owner's). KeyboardInterrupt leaves each
    seed's checkpoint exact for a later resume. `layer_cache_dir` keeps PLMNR's and DIRE's
    frozen-layer hidden states on disk (memory-mapped, reused by later runs on the same data).

    With `track_dir`, each seed's loss per step and dev metrics per epoch go to the tracker
    `config.track` names (one tracker run per seed, files under `track_dir`); without it nothing
    is tracked. An `accelerator` passed in must then come from `make_accelerator(tracking=...)`."""
    if model not in MODEL_NAMES:
        raise ConfigError("model", f"{model!r} is unknown; choose one of {', '.join(MODEL_NAMES)}")
    tracking = experiment_tracking(config, track_dir)
    if accelerator is None:
        accelerator = make_accelerator(tracking=tracking)
    elif tracking is not None and tracking.enabled and not accelerator.log_with:
        raise RecsysError(f"tracking to {config.track} needs an accelerator made with make_accelerator(tracking=...)")
    set_threads(config.threads, accelerator)
    seed_list = list(seeds) if seeds is not None else config.seed_list
    settings = [run_settings(model, data, config, s, checkpoint_root, resume, owner, layer_cache_dir, cohorts)
                for s in seed_list]
    if resume and not any(s.resume for s in settings):
        raise CheckpointError(f"no checkpoint of {model} on {data.dataset}/{data.variant} to resume under {checkpoint_root}")
    runs = []
    started = time.strftime("%Y%m%d-%H%M%S")  # reruns of the same settings get their own tracker runs
    for seed_settings in settings:
        start_run(accelerator, tracker_run_name(model, data, seed_settings, started),
                  dataclasses.asdict(config) | {"model": model, "dataset": data.dataset, "variant": data.variant,
                                                "seed": seed_settings.seed})
        try:
            result = run_training(accelerator, data, seed_settings, progress=progress)
        finally:
            finish_run(accelerator)
        runs.append(result)
        if on_seed is not None:
            on_seed(result)
    accelerator.wait_for_everyone()
    return ExperimentResult(model, data.dataset, data.variant, runs, [s.checkpoint_dir for s in settings],
                            accelerator.num_processes, str(accelerator.device))


def experiment_tracking(config: TrainConfig, track_dir: Path | None) -> Tracking | None:
    """The tracker of `config.track` writing under `track_dir`; None without a folder."""
    return Tracking(config.track, Path(track_dir)) if track_dir is not None else None


def tracker_run_name(model: str, data: EncodedDataset, settings: RunSettings, started: str) -> str:
    """One seed's run in the tracker: its checkpoint folder's name (or what it is made of) and
    when the experiment started."""
    if settings.checkpoint_dir is not None:
        base = Path(settings.checkpoint_dir).name
    else:
        base = f"{model}-{safe_name(data.dataset)}-{data.variant.replace('+', '_')}-seed{settings.seed}"
    return f"{base}-{started}"


def share_encoded(accelerator, build: Callable[[], tuple[EncodedDataset, Path | None]],
                  user_errors: tuple[type[BaseException], ...] = (RecsysError,)) -> EncodedDataset:
    """The same encoded dataset on every process: rank 0 runs `build` (which caches the tensors
    to a file), the other ranks load that file. An error on rank 0 stops every rank; the
    `user_errors` types become a RecsysError with the same message on the other ranks."""
    if accelerator.num_processes == 1:
        return build()[0]
    from accelerate.utils import broadcast_object_list

    message: list[object] = [None, None, False]  # [cache path, error text, user error?]
    data = None
    if accelerator.is_main_process:
        try:
            data, path = build()
            if path is None:
                raise RecsysError("several processes need a cache folder to share the encoded data; give one")
            message[0] = str(path)
        except Exception as exc:
            message[1], message[2] = str(exc) or type(exc).__name__, isinstance(exc, user_errors)
            broadcast_object_list(message)
            raise
    broadcast_object_list(message)
    if message[1] is not None:
        raise (RecsysError if message[2] else RuntimeError)(f"{message[1]}")
    return data if data is not None else load_encoded(Path(str(message[0])))


@dataclass(frozen=True)
class Prediction:
    path: Path
    impressions: int
    checkpoint: Path


def predict(model: str, data: EncodedDataset, config: TrainConfig, out: Path, *, checkpoint_root: Path | None = None,
            checkpoint: Path | None = None, split: str = "test", seed: int | None = None, owner: str = "") -> Prediction:
    """Write a MIND leaderboard file (one line per impression: its id, then the candidates' ranks
    as a bracketed comma list) from the best weights of a trained seed (default `config.seed`).

    The checkpoint is `checkpoint` (a run's folder) or the seed's folder under `checkpoint_root`;
    it must have been written with the same settings, on the same rows, by the same owner."""
    import numpy as np

    from recsys.evaluate import score_split
    from recsys.models import build_model
    from recsys.train import feature_sizes

    if split not in data.splits:
        raise RecsysError(f"dataset '{data.dataset}' has no '{split}' split (has: {', '.join(sorted(data.splits))})")
    seed = config.seed if seed is None else seed
    settings = run_settings(model, data, config, seed, checkpoint_root, owner=owner)
    folder = Path(checkpoint) if checkpoint is not None else settings.checkpoint_dir
    if folder is None:
        raise CheckpointError("predict needs a checkpoint folder or a checkpoint root")
    found = find_checkpoint(folder)
    if found is None:
        raise CheckpointError(f"no trained checkpoint in {folder}; train {model} with the same settings first")
    check_checkpoint(found, settings, data.fingerprint)
    state = read_loop_state(found)
    if not state.best_weights:
        raise CheckpointError(f"checkpoint {found} has no finished epoch yet; resume its training first")
    net = build_model(model, settings.model_config, feature_sizes(data))
    net.load_state_dict(state.best_weights)
    arrays = data.split(split)
    scored = score_split(net, data, arrays, config.history_len, config.eval_batch_size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # nothing half-written under `out`
    try:
        with partial.open("w", encoding="utf-8") as handle:
            for row, scores in zip(scored.rows, scored.scores, strict=True):
                order = np.argsort(-scores.astype(np.float64), kind="stable")  # ties keep candidate order
                ranks = np.empty(len(scores), dtype=np.int64)
                ranks[order] = np.arange(1, len(scores) + 1)
                handle.write(f"{arrays.impression_id[row]} [{','.join(map(str, ranks.tolist()))}]\n")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return Prediction(out, len(scored.rows), found)
