"""`genre-local train` and `genre-local predict` (the recommender stage; issue 4).

Both run the same under `accelerate launch -m genre_local train ...`: every process builds or
loads the cached tensors, only rank 0 opens the store, prints, and writes results. The store
is opened briefly to read the variant and again at the end to write runs, never held open
during training (DuckDB allows a single writing process).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from genre_local.cli_support import app_context, command_errors, emit_json, stderr_console, stdout_console
from genre_local.config import resolve_relative, with_overrides
from genre_local.errors import UserError


class ModelName(str, Enum):
    naml = "naml"
    lstur = "lstur"
    nrms = "nrms"
    plmnr = "plmnr"
    bst = "bst"
    dcn = "dcn"
    pnn = "pnn"
    din = "din"


ModelOpt = Annotated[ModelName, typer.Option("--model", help="Recommender (naml, lstur, nrms, plmnr: matching; bst, dcn, pnn, din: ranking).", case_sensitive=False)]
DatasetOpt = Annotated[str, typer.Option("--dataset", help="Dataset name in the store.")]
VariantOpt = Annotated[
    str, typer.Option("--variant", help="original | ns | up | ng | chain, or a combination like ns+up+ng.")
]
NgKOpt = Annotated[Optional[int], typer.Option("--ng-k", help="Synthetic news per cold user for ng/chain (default 2).")]
FeaturesOpt = Annotated[
    Optional[str],
    typer.Option("--features", help="News features: subset of title,abstract,category,subcategory,image (default title,category)."),
]
ImageOpt = Annotated[
    Optional[Path], typer.Option("--image-file", help="512-d image vectors: .npy with an id list (.txt), or parquet with nid.")
]
CheckpointOpt = Annotated[
    Optional[Path], typer.Option("--checkpoint-dir", help="Checkpoint folder (default: <cache_dir>/checkpoints next to the store).")
]


@dataclasses.dataclass
class _Prepared:
    data: object
    spec: object
    features: tuple[str, ...]
    cfg: object
    checkpoint_root: Path


def _prepare(ctx: typer.Context, accelerator, dataset: str, variant: str, ng_k: int | None,
             features: str | None, image_file: Path | None, checkpoint_dir: Path | None,
             **train_flags) -> _Prepared:
    """Flags -> config; rank 0 reads the store and builds (or finds) the cached tensors, the
    other ranks wait and load the same cache file."""
    from accelerate.utils import broadcast_object_list

    from recsys.data import load_encoded, plan_encoded
    from recsys.features import parse_features
    from recsys.variants import parse_variant

    context = app_context(ctx)
    cfg = with_overrides(context.config.train, ng_k=ng_k, features=features, **train_flags)
    _set_threads(cfg.threads, accelerator)
    for name in ("epochs", "seeds", "batch_size"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if cfg.lr <= 0:
        raise UserError(f"--lr must be positive, got {cfg.lr}")
    spec = parse_variant(variant, cfg.ng_k)
    feats = parse_features(cfg.features)
    if image_file is not None and not image_file.exists():
        raise UserError(f"--image-file {image_file} does not exist")
    cache_dir = resolve_relative(context.db_path, context.config.paths.cache_dir)
    checkpoint_root = checkpoint_dir or cache_dir / "checkpoints"

    message: list[object] = [None, None]  # [cache path, error text]
    data = None
    if accelerator.is_main_process:
        try:
            if not Path(context.db_path).exists():
                raise UserError(f"store {context.db_path} does not exist; import a dataset first (genre-local data import)")
            with context.open_store() as store:
                store.require_dataset(dataset)
                plan = plan_encoded(store.conn, dataset, spec, feats, cfg.title_len, cfg.abstract_len,
                                    image_file, cache_dir)
            data, path = plan.build()  # tokenizing with the store closed
            message[0] = str(path)
        except UserError as exc:
            message[1] = str(exc)
            if accelerator.num_processes == 1:
                raise
    if accelerator.num_processes > 1:
        broadcast_object_list(message)
        if message[1] is not None:
            raise UserError(str(message[1]))
        if data is None:
            data = load_encoded(Path(str(message[0])))
    return _Prepared(data, spec, feats, cfg, Path(checkpoint_root))


def _set_threads(threads: int, accelerator) -> None:
    """[train] threads, or with several CPU processes on one machine a fair share of the cores
    (oversubscribed CPU threads slow every process down many times over)."""
    import os

    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    elif accelerator.device.type == "cpu" and accelerator.num_processes > 1:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


def _model_config(cfg, features: tuple[str, ...], use_profile: bool):
    from recsys.models import ModelConfig

    return ModelConfig(
        embed_dim=cfg.embed_dim, num_heads=cfg.num_heads, transformer_layers=cfg.transformer_layers,
        dropout=cfg.dropout, history_len=cfg.history_len, title_len=cfg.title_len,
        abstract_len=cfg.abstract_len, features=features, use_profile=use_profile, lora_rank=cfg.lora_rank,
    )


def _run_tag(model: str, dataset: str, spec, features: tuple[str, ...]) -> str:
    from recsys.data import safe_name

    return f"{model}-{safe_name(dataset)}-{spec.name.replace('+', '_')}-k{spec.ng_k}-{'_'.join(features)}"


def _progress():
    from rich.progress import TextColumn

    from genre_local.progress import task_progress

    return task_progress(
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:,.0f} samples/s")
    )


def _fmt(pair: tuple[float, float]) -> str:
    mean, std = pair
    return "n/a" if math.isnan(mean) else f"{mean:.4f}±{std:.4f}"  # narrow: fits 80 columns


@command_errors
def train(
    ctx: typer.Context,
    model: ModelOpt,
    dataset: DatasetOpt,
    variant: VariantOpt = "original",
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Maximum epochs (default 3; early stopping on dev AUC).")] = None,
    seeds: Annotated[Optional[int], typer.Option("--seeds", help="Number of seeds (default 1; the paper used 5).")] = None,
    ng_k: NgKOpt = None,
    features: FeaturesOpt = None,
    image_file: ImageOpt = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Training batch size per process (default 64).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate (default 1e-3).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoints of an interrupted run.")] = False,
    checkpoint_dir: CheckpointOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Also print one JSON object as the last stdout line.")] = False,
) -> None:
    """Train a recommender (naml|lstur|nrms|plmnr|bst|dcn|pnn|din) on a dataset variant and store the runs."""
    from recsys.experiment import (
        RunIdentity, mean_std, new_experiment_id, original_auc_by_seed, paired_p_value, store_runs,
    )
    from recsys.train import RunSettings, find_checkpoint, make_accelerator, run_training

    accelerator = make_accelerator()
    prepared = _prepare(ctx, accelerator, dataset, variant, ng_k, features, image_file, checkpoint_dir,
                        epochs=epochs, seeds=seeds, batch_size=batch_size, lr=lr)
    cfg, spec, data = prepared.cfg, prepared.spec, prepared.data
    model_name = model.value
    model_config = _model_config(cfg, prepared.features, spec.up)
    tag = _run_tag(model_name, dataset, spec, prepared.features)
    seed_list = [cfg.seed + i for i in range(cfg.seeds)]
    if resume and not any(find_checkpoint(prepared.checkpoint_root / f"{tag}-seed{s}") for s in seed_list):
        raise UserError(f"--resume: no checkpoint for {tag} under {prepared.checkpoint_root}; train without --resume first")

    console = stderr_console()
    if accelerator.is_main_process:
        stats = ", ".join(f"{k} {v:,}" for k, v in data.stats.items() if v)
        console.print(f"[bold]{model_name}[/] on {dataset} / {spec.name} ({stats}); "
                      f"{accelerator.num_processes} process(es) on {accelerator.device}")
    results = []
    # Only rank 0 draws progress; the other ranks would paint empty bars over it.
    with _progress() if accelerator.is_main_process else contextlib.nullcontext() as progress:
        for seed in seed_list:
            folder = prepared.checkpoint_root / f"{tag}-seed{seed}"
            settings = RunSettings(
                model=model_name, seed=seed, epochs=cfg.epochs, batch_size=cfg.batch_size,
                eval_batch_size=cfg.eval_batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                negatives=cfg.negatives, patience=cfg.patience, history_len=cfg.history_len,
                model_config=model_config, checkpoint_dir=folder,
                resume=resume and find_checkpoint(folder) is not None,
                checkpoint_every=cfg.checkpoint_every, num_workers=cfg.num_workers, fast_eval=cfg.fast_eval,
            )
            try:
                result = run_training(accelerator, data, settings,
                                      progress=progress)
            except KeyboardInterrupt:
                if accelerator.is_main_process:
                    console.print(f"checkpoint saved in {folder}; the same command with --resume continues it")
                raise
            results.append(result)
            if accelerator.is_main_process:
                auc = result.metrics[result.eval_split]["all"]["auc"]
                console.print(f"seed {seed}: {result.eval_split} auc {auc:.4f} (best epoch {result.best_epoch}"
                              f"/{result.epochs_run}, {sum(result.train_samples_per_s) / max(len(result.train_samples_per_s), 1):,.0f} samples/s)")
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return

    ident = RunIdentity(model=model_name, kind=_kind(model_name), dataset=dataset,
                        variant=spec.name, features=",".join(prepared.features), ng_k=spec.ng_k)
    config = dataclasses.asdict(cfg) | {"variant": spec.name, "seeds": seed_list,
                                        "image_file": str(image_file) if image_file else None}
    eval_split = results[0].eval_split
    try:
        with _open_store_waiting(ctx) as store:
            run_ids = store_runs(store, new_experiment_id(), ident, config, data.fingerprint, data.stats,
                                 str(accelerator.device), results)
            baseline = original_auc_by_seed(store.conn, ident, eval_split) if spec.name != "original" else {}
    except UserError as exc:
        raise UserError(
            f"{exc}; the trained weights are kept in {prepared.checkpoint_root}: the same command with "
            "--resume stores the runs without training again"
        ) from exc
    p_value = paired_p_value(results, baseline) if baseline else None
    summary = mean_std(results)

    from rich.table import Table

    table = Table(title=f"{model_name} · {dataset} · {spec.name} · {eval_split} · {len(results)} seed(s)")
    table.add_column("users")
    for metric in ("auc", "mrr", "ndcg@5", "ndcg@10"):
        table.add_column(metric, justify="right")
    for group in ("all", "new", "warm"):
        table.add_row(group, *(_fmt(summary[group][m]) for m in ("auc", "mrr", "ndcg@5", "ndcg@10")))
    out = stdout_console()
    out.print(table)
    out.print(f"stored runs {', '.join(run_ids)}"
              + (f"; paired t-test vs original (AUC, {sum(r.seed in baseline for r in results)} seeds): "
                 f"p = {p_value:.4g}" if p_value is not None else ""))
    if as_json:
        def means(group: str) -> dict[str, float | None]:
            return {m: (None if math.isnan(v[0]) else round(v[0], 6)) for m, v in summary[group].items()}

        emit_json({
            "model": model_name, "dataset": dataset, "variant": spec.name, "seeds": len(results),
            "metrics": means("all"), "groups": {"new": means("new"), "warm": means("warm")},
            "p_value": p_value,
        })


def _open_store_waiting(ctx: typer.Context, wait_s: float = 120.0):
    """Open the store for the final write, waiting a while if another command holds the lock:
    losing a finished training to a short `generate` or `report` would be a poor trade."""
    import time

    from genre_local.errors import StoreError

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return app_context(ctx).open_store()
        except StoreError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(3.0)


def _kind(model_name: str) -> str:
    return "matching" if model_name in ("naml", "lstur", "nrms", "plmnr") else "ranking"


@command_errors
def predict(
    ctx: typer.Context,
    model: ModelOpt,
    dataset: DatasetOpt,
    out: Annotated[Path, typer.Option("--out", help="Prediction file to write (MIND leaderboard format).")],
    variant: VariantOpt = "original",
    ng_k: NgKOpt = None,
    features: FeaturesOpt = None,
    image_file: ImageOpt = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Which trained seed's best weights to use (default 1).")] = None,
    split: Annotated[str, typer.Option("--split", help="Split to rank (default test).")] = "test",
    checkpoint_dir: CheckpointOpt = None,
) -> None:
    """Write a MIND leaderboard prediction file (one line per impression: its id, then the
    candidates' ranks as a bracketed comma list) from a trained run."""
    import numpy as np
    import torch

    from recsys.evaluate import score_split
    from recsys.train import LoopState, feature_sizes, find_checkpoint, make_accelerator

    accelerator = make_accelerator()
    if accelerator.num_processes > 1:
        raise UserError("predict runs in one process; start it without accelerate launch")
    prepared = _prepare(ctx, accelerator, dataset, variant, ng_k, features, image_file, checkpoint_dir, seed=seed)
    cfg, spec, data = prepared.cfg, prepared.spec, prepared.data
    if split not in data.splits:
        raise UserError(f"dataset '{dataset}' has no '{split}' split (has: {', '.join(sorted(data.splits))})")
    tag = _run_tag(model.value, dataset, spec, prepared.features)
    found = find_checkpoint(prepared.checkpoint_root / f"{tag}-seed{cfg.seed}")
    loop_file = (found or prepared.checkpoint_root / f"{tag}-seed{cfg.seed}" / "latest") / "loop.pt"
    if not loop_file.exists():
        raise UserError(
            f"no trained checkpoint {loop_file}; run `genre-local train --model {model.value} --dataset {dataset} "
            f"--variant {spec.name}` with the same options first"
        )
    state = LoopState()
    state.load_state_dict(torch.load(loop_file, weights_only=True))
    if not state.best_weights:
        raise UserError(f"checkpoint {loop_file} has no finished epoch yet; resume training with --resume first")
    from recsys.models import build_model

    net = build_model(model.value, _model_config(cfg, prepared.features, spec.up), feature_sizes(data))
    net.load_state_dict(state.best_weights)
    arrays = data.split(split)
    scored = score_split(net, data, arrays, cfg.history_len, cfg.eval_batch_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for row, scores in zip(scored.rows, scored.scores, strict=True):
            order = np.argsort(-scores.astype(np.float64), kind="stable")  # ties keep candidate order
            ranks = np.empty(len(scores), dtype=np.int64)
            ranks[order] = np.arange(1, len(scores) + 1)
            handle.write(f"{arrays.impression_id[row]} [{','.join(map(str, ranks.tolist()))}]\n")
    stdout_console().print(f"wrote {len(scored.rows):,} impressions of {dataset}/{split} to {out}")
