"""`genre-local train` and `genre-local predict` (the recommender stage).

Each command parses its flags into a typed request, calls one function of
genre_local/training.py, and renders what it returns. Both run the same under
`accelerate launch -m genre_local train ...` (rank 0 alone prints and writes).
"""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from genre_local.cli_support import app_context, command_errors, emit_json, stderr_console, stdout_console
from genre_local.config import resolve_relative, with_overrides
from genre_local.errors import UserError
from recsys.catalog import (DECAY_SCOPES, FUSION_FORMS, MATCHING_MODELS, METRICS, MODEL_NAMES, OPTIMIZERS, RANKING_MODELS,
                            USER_GROUPS)
from recsys.errors import ConfigError
from recsys.tracking import DEFAULT_TRACKER, TRACKERS

TrackerName = Enum("TrackerName", {name: name for name in TRACKERS}, type=str)  # type: ignore[misc]
ModelName = Enum("ModelName", {name: name for name in MODEL_NAMES}, type=str)  # type: ignore[misc]
OptimizerName = Enum("OptimizerName", {name: name for name in OPTIMIZERS}, type=str)  # type: ignore[misc]
DecayScope = Enum("DecayScope", {name: name for name in DECAY_SCOPES}, type=str)  # type: ignore[misc]
FusionForm = Enum("FusionForm", {name: name for name in FUSION_FORMS}, type=str)  # type: ignore[misc]

ModelOpt = Annotated[ModelName, typer.Option(
    "--model", help=f"Recommender ({', '.join(MATCHING_MODELS)}: matching; {', '.join(RANKING_MODELS)}: ranking).",
    case_sensitive=False)]
DatasetOpt = Annotated[str, typer.Option("--dataset", help="Dataset name in the store.")]
VariantOpt = Annotated[
    str, typer.Option("--variant", help="original | ns | up | ng | chain, or a combination like ns+up+ng.")
]
NgKOpt = Annotated[Optional[int], typer.Option("--ng-k", help="Synthetic news per cold user for ng/chain (default 2).")]
FirstSeedOpt = Annotated[Optional[int], typer.Option(
    "--first-seed", help="The first seed: --seeds N runs seeds first-seed .. first-seed+N-1 (default 1, or [train] seed).")]
FeaturesOpt = Annotated[
    Optional[str],
    typer.Option("--features", help="News features: subset of title,abstract,category,subcategory,image (default title,category)."),
]
ImageOpt = Annotated[
    Optional[Path], typer.Option("--image-file", help="512-d image vectors: .npy with an id list (.txt), or parquet with nid.")
]
LlmOpt = Annotated[
    Optional[str], typer.Option("--llm", help="Generation source a non-original variant reads: a stored LLM id, its "
                                "folder name, or LLM/prompt-set; add +score, +label or +label-score for profiles (up, chain) of "
                                "that --profile-method (default: the only one stored; "
                                "`genre-local generations list` shows them).", show_default=False)
]
ReportSplitOpt = Annotated[Optional[str], typer.Option(
    "--report-split", help="auto (default, or [train] report_split): test when it is labelled, else dev; "
    "dev: dev as on MIND even when test is labelled (test is not scored); test.")]
CheckpointOpt = Annotated[
    Optional[Path], typer.Option("--checkpoint-dir", help="Checkpoint folder (default: <cache_dir>/checkpoints next to the store); "
                                 "each store keeps its own checkpoints in a subfolder named by its id.")
]
EncoderOpt = Annotated[Optional[str], typer.Option(
    "--encoder", help="DIRE's news encoder: llama (the embedded SmolLM2, default), a [models] alias, or a local "
    "LLaMA-family Hugging Face folder.")]


def flag_name(setting: str) -> str:
    """The command-line flag of a [train] setting, for its error messages: --ng-k for ng_k,
    --first-seed for seed."""
    return "--" + {"seed": "first-seed"}.get(setting, setting).replace("_", "-")


def _dire_encoder(context, model: str, encoder: str | None) -> str:
    """--encoder (else [train] encoder, else the embedded SmolLM2) as a prepared local folder for
    DIRE; "" for the other models, which have no such encoder."""
    if model != "dire":
        if encoder is not None:
            raise UserError(f"--encoder {encoder}: only --model dire reads news through an LLM encoder; drop --encoder")
        return ""
    return context.dire_encoder(encoder)


TRACKING_FOLDER = "tracking"  # under paths.cache_dir: <cache_dir>/tracking/<run name>/


def _request(ctx: typer.Context, model: str, dataset: str, variant: str, image_file: Path | None,
             checkpoint_dir: Path | None, resume: bool, run_id: str | None = None, tracked: bool = False,
             encoder: str | None = None, llm: str | None = None, retrain: bool = False, **flags: Any):
    """Flags over genre.toml's [train] -> a checked TrainRequest; a bad flag names itself."""
    from genre_local.training import TrainRequest
    from genre_local.data.names import check_dataset_name
    from recsys.tracking import require_installed
    from recsys.variants import parse_variant

    check_dataset_name(dataset, "--dataset")  # it becomes part of cache and checkpoint file names
    context = app_context(ctx)
    try:
        cfg = with_overrides(context.config.train, **flags)
        cfg = with_overrides(cfg, encoder=_dire_encoder(context, model, encoder))
        spec = parse_variant(variant, cfg.ng_k)
        if tracked:
            require_installed(cfg.track)
    except ConfigError as exc:
        given = exc.key in flags and flags[exc.key] is not None or exc.key == "variant"
        raise UserError(f"{flag_name(exc.key)} {exc.problem}" if given else f"[train] {exc}") from exc
    if image_file is not None and not image_file.exists():
        raise UserError(f"--image-file {image_file} does not exist")
    if "image" in cfg.feature_names and image_file is None:
        raise UserError("--features includes 'image' but no --image-file was given")
    cache_dir = resolve_relative(context.db_path, context.config.paths.cache_dir)
    return TrainRequest(db_path=Path(context.db_path), model=model, dataset=dataset, spec=spec, config=cfg,
                        cache_dir=cache_dir, checkpoint_base=Path(checkpoint_dir or cache_dir / "checkpoints"),
                        image_file=image_file, resume=resume, retrain=retrain, run_id=run_id, llm=llm,
                        track_dir=cache_dir / TRACKING_FOLDER if tracked else None)


def _progress():
    from rich.progress import TextColumn

    from genre_local.progress import task_progress

    return task_progress(
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:,.0f} samples/s")
    )


def _fmt(pair: tuple[float, float | None]) -> str:
    mean, std = pair
    if math.isnan(mean):
        return "n/a"
    # One seed has no spread: "±0.0000" would claim one was measured. Narrow: fits 80 columns.
    return f"{mean:.4f}" if std is None else f"{mean:.4f}±{std:.4f}"


@command_errors
def train(
    ctx: typer.Context,
    model: ModelOpt,
    dataset: DatasetOpt,
    variant: VariantOpt = "original",
    llm: LlmOpt = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Maximum epochs (default 3; early stopping on dev AUC, or on a held-out train slice when dev is reported).")] = None,
    seeds: Annotated[Optional[int], typer.Option("--seeds", help="Number of seeds (default 1; the paper used 5).")] = None,
    first_seed: FirstSeedOpt = None,
    ng_k: NgKOpt = None,
    features: FeaturesOpt = None,
    image_file: ImageOpt = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Training batch size per process (default 64).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate (default 1e-3).")] = None,
    optimizer: Annotated[Optional[OptimizerName], typer.Option(
        "--optimizer", case_sensitive=False,
        help="adam: Adam with L2 weight decay, as GENRE (default, or [train] optimizer); adamw: decoupled weight decay.")] = None,
    decay_scope: Annotated[Optional[DecayScope], typer.Option(
        "--decay-scope", case_sensitive=False,
        help="Which parameters the weight decay reaches: weights (weight matrices; not lookup tables, biases "
             "or the gated fusion; default, or [train] decay_scope) or all.")] = None,
    interest_fusion: Annotated[Optional[FusionForm], typer.Option(
        "--interest-fusion", case_sensitive=False,
        help="How `up` profiles meet the user vector: gated (starts as the identity; default, or [train] "
             "interest_fusion) or paper (GENRE eq. 2 as written).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(
        "--max-steps", help="Training steps per epoch at most (default 0: every batch); with --epochs 1 it "
        "bounds the whole training.")] = None,
    report_split: ReportSplitOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoints of an interrupted run.")] = False,
    retrain: Annotated[bool, typer.Option(
        "--retrain", help="Train the seeds whose run is stored already (same model, variant, source, data and "
        "settings) again; the newer run is the one `report` counts. Without it they are skipped.")] = False,
    checkpoint_dir: CheckpointOpt = None,
    encoder: EncoderOpt = None,
    track: Annotated[Optional[TrackerName], typer.Option(
        "--track", case_sensitive=False,
        help=f"Training curves (loss per step, dev metrics per epoch) to {' | '.join(TRACKERS)} (default "
             f"{DEFAULT_TRACKER}, or [train] track), written under <cache_dir>/{TRACKING_FOLDER}; "
             "mlflow and wandb run offline and need their package installed.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Also print one JSON object as the last stdout line.")] = False,
) -> None:
    """Train a recommender (naml|lstur|nrms|plmnr|dire|bst|dcn|pnn|din) on a dataset variant and store the runs."""
    import contextlib

    from genre_local.training import train_and_store
    from recsys.train import make_accelerator

    if resume and retrain:
        raise UserError("--resume continues a checkpoint and --retrain trains a stored run from scratch; pass one")
    request = _request(ctx, model.value, dataset, variant, image_file, checkpoint_dir, resume, tracked=True,
                       encoder=encoder, llm=llm, retrain=retrain, epochs=epochs, seeds=seeds, seed=first_seed, ng_k=ng_k, features=features,
                       batch_size=batch_size, lr=lr, max_steps=max_steps, report_split=report_split, track=track.value if track is not None else None,
                       optimizer=optimizer.value if optimizer is not None else None,
                       decay_scope=decay_scope.value if decay_scope is not None else None,
                       interest_fusion=interest_fusion.value if interest_fusion is not None else None)
    accelerator = make_accelerator(tracking=request.tracking())
    console = stderr_console()
    # Only rank 0 draws progress; the other ranks would paint empty bars over it.
    with _progress() if accelerator.is_main_process else contextlib.nullcontext() as progress:
        outcome = train_and_store(request, accelerator=accelerator, progress=progress, say=console.print)
    if outcome is None:  # not rank 0
        return
    finished = ", ".join(f"seed {seed} as run {run_id}" for seed, run_id in sorted(outcome.already_stored.items()))
    source = outcome.source.label if outcome.source is not None else None
    if outcome.experiment is None:
        console.print(f"{request.model} on {dataset} / {request.spec.name}{f' from {source}' if source else ''} is "
                      f"finished and already stored ({finished}); "
                      "nothing trained or stored (--retrain trains it again)", soft_wrap=True)
    elif finished:
        console.print(f"already finished and stored, not trained again: {finished}", soft_wrap=True)
    _print_seeds(request, dataset, source, outcome)
    if as_json:
        table = outcome.table
        summary = table.summary()

        def means(group: str) -> dict[str, float | None]:
            return {m: (None if math.isnan(v[0]) else round(v[0], 6)) for m, v in summary[group].items()}

        emit_json({
            "model": request.model, "dataset": dataset, "variant": request.spec.name, "source": source,
            "seeds": len(table.seeds),
            "trained_seeds": len(outcome.experiment.runs) if outcome.experiment is not None else 0,
            "eval_split": table.eval_split,
            "stop_split": table.stop_split,
            "metrics": means("all") if "all" in summary else {},
            "groups": {g: means(g) for g in USER_GROUPS if g != "all" and g in summary},
            "p_value": outcome.p_value, "paired_seeds": outcome.paired_seeds, "unpaired_note": table.unpaired_note,
            "stored_runs": outcome.run_ids,
            "already_stored": sorted(outcome.already_stored.values()),
            "runs": [{"seed": r.seed, "run_id": r.run_id, "trained": r.trained, "superseded_by": r.superseded_by,
                      "autocast": r.autocast} for r in table.seeds],
        })


def _print_seeds(request, dataset: str, source: str | None, outcome) -> None:
    """The metrics over every seed asked for, stored runs kept included (the numbers `report`
    counts for them), then one line per seed saying which run it is and whether it was trained now."""
    from rich.table import Table

    table = outcome.table
    if not table.seeds:
        return
    summary = table.summary()
    stopped = f"stopped on {table.stop_split}" if table.stop_split else "no early stopping"
    kept = sum(not r.trained for r in table.seeds)
    seeds = f"{len(table.seeds)} seed(s)" + (f", {kept} stored before" if kept else "")
    out = Table(title=f"{request.model} · {dataset} · {request.spec.name}{f' ({source})' if source else ''} · "
                      f"reported on {table.eval_split} ({stopped}) · {seeds}")
    out.add_column("users")
    for metric in METRICS:
        out.add_column(metric, justify="right")
    for group in USER_GROUPS:
        if group in summary:  # "empty" only where some user has no history
            out.add_row(group, *(_fmt(summary[group][m]) for m in METRICS))
    console = stdout_console()
    console.print(out)
    for r in table.seeds:
        auc = "n/a" if r.auc is None else f"{r.auc:.4f}"
        how = "trained now" if r.trained else "stored before, not trained again"
        if r.autocast == "bfloat16":
            how += ", under bfloat16 autocast"
        if r.superseded_by is not None:
            how += f"; report counts the newer run {r.superseded_by} of other settings instead"
        console.print(f"seed {r.seed}: run {r.run_id} ({how}), {table.eval_split} auc {auc}", highlight=False,
                      soft_wrap=True)
    console.print(f"stored runs {', '.join(outcome.run_ids) or 'none'}"
                  + (f"; paired t-test vs original (AUC, {outcome.paired_seeds} seeds): "
                     f"p = {outcome.p_value:.4g}" if outcome.p_value is not None else ""))
    if table.unpaired_note is not None:
        console.print(f"paired t-test vs original: {table.unpaired_note}", highlight=False, soft_wrap=True)


@command_errors
def predict(
    ctx: typer.Context,
    model: ModelOpt,
    dataset: DatasetOpt,
    out: Annotated[Path, typer.Option("--out", help="Prediction file to write (MIND leaderboard format).")],
    variant: VariantOpt = "original",
    llm: LlmOpt = None,
    ng_k: NgKOpt = None,
    features: FeaturesOpt = None,
    image_file: ImageOpt = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Which trained seed's best weights to use (default 1).")] = None,
    split: Annotated[str, typer.Option("--split", help="Split to rank.")] = "test",
    checkpoint_dir: CheckpointOpt = None,
    encoder: EncoderOpt = None,
    run_id: Annotated[Optional[str], typer.Option("--run", help="Stored run whose weights to use (default: the newest "
                                                  "run of this model, variant, features and seed).")] = None,
) -> None:
    """Write a MIND leaderboard prediction file (one line per impression: its id, then the
    candidates' ranks as a bracketed comma list) from a trained run."""
    from genre_local.training import predict_to_file

    if out.exists() and not out.is_file():  # renaming the finished file over it would replace a folder or a device
        raise UserError(f"--out {out} exists and is not a regular file (a folder or a device); pass the path of the "
                        "prediction file to write")
    request = _request(ctx, model.value, dataset, variant, image_file, checkpoint_dir, False, run_id=run_id,
                       encoder=encoder, llm=llm, ng_k=ng_k, features=features, seed=seed)
    written, used = predict_to_file(request, out, split)
    stdout_console().print(f"wrote {written.impressions:,} impressions of {dataset}/{split} to {written.path} "
                           f"with the weights of run {used}")
