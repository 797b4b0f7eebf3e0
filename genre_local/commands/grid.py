"""`genre-local grid`: every (model, variant, source, seed) run of the paper's grid, resumable.

Parses the flags into a GridSpec, plans it against the store (genre_local/grid.py), prints the
plan, executes the cells not yet stored and prints one progress line per finished cell.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from genre_local.cli_support import app_context, command_errors, emit_json, stderr_console, stdout_console
from genre_local.commands.train import CheckpointOpt, DatasetOpt, FeaturesOpt, FirstSeedOpt, NgKOpt, ReportSplitOpt, flag_name
from genre_local.config import resolve_relative, with_overrides
from genre_local.errors import UserError
from recsys.errors import ConfigError

# A grid started right after another command (or a killed grid's last worker) waits this long
# for the store's lock instead of failing at once.
PLAN_LOCK_WAIT_S = 60.0


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@command_errors
def grid(
    ctx: typer.Context,
    dataset: DatasetOpt,
    models: Annotated[str, typer.Option("--models", help="all, or a comma list of models (e.g. nrms,din).")] = "all",
    variants: Annotated[str, typer.Option("--variants", help="Comma list of variants, each may combine parts "
                                          "(e.g. original,ns,up,ng,chain,ns+up+ng).")] = "original,ns,up,ng,chain",
    llm: Annotated[Optional[str], typer.Option(
        "--llm", help="Generation sources the variants that read generations are trained on, one cell each: a "
        "comma list of sources as `train --llm` takes them (LLM/SET, LLM/SET+label, ...), or all (every stored "
        "source of each variant); original is trained once (default: the only one stored; `genre-local "
        "generations list` shows them).", show_default=False)] = None,
    seeds: Annotated[Optional[int], typer.Option("--seeds", help="Seeds per (model, variant, source) (default [train] seeds; "
                                                 "the paper used 5).")] = None,
    first_seed: FirstSeedOpt = None,
    workers: Annotated[int, typer.Option("--workers", help="Cells trained at once: processes on this machine "
                                         "(one GPU each where there are GPUs), or Ray tasks with --engine ray.")] = 1,
    engine: Annotated[str, typer.Option("--engine", help="local (this machine) or ray (the running Ray cluster, "
                                        "else a local one; the store is written by this process).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="With --engine ray: the cluster's "
                                                       "HOST:PORT (default RAY_ADDRESS, else a Ray started here).")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Maximum epochs (default [train] epochs).")] = None,
    report_split: ReportSplitOpt = None,
    ng_k: NgKOpt = None,
    features: FeaturesOpt = None,
    checkpoint_dir: CheckpointOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; train nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Also print one JSON object as the last stdout line.")] = False,
) -> None:
    """Train every (model, variant, source, seed) of a grid not stored yet; kill and rerun to resume."""
    from genre_local import grid as grid_lib
    from genre_local.training import TrainRequest, open_existing_store

    context = app_context(ctx)
    flags = {"epochs": epochs, "seeds": seeds, "seed": first_seed, "ng_k": ng_k, "features": features,
             "report_split": report_split}
    try:
        cfg = with_overrides(context.config.train, **flags)
    except ConfigError as exc:
        given = exc.key in flags and flags[exc.key] is not None
        raise UserError(f"{flag_name(exc.key)} {exc.problem}" if given else f"[train] {exc}") from exc
    if engine not in grid_lib.ENGINES:
        raise UserError(f"--engine {engine} is unknown; use one of {', '.join(grid_lib.ENGINES)}")
    if workers < 1:
        raise UserError(f"--workers must be 1 or more, got {workers}")
    if ray_address and engine != "ray":
        raise UserError("--ray-address needs --engine ray")
    if engine == "ray" and not dry_run and (ray_address or os.environ.get("RAY_ADDRESS")):
        from genre_local.pipeline.ray_engine import check_reachable

        check_reachable(ray_address or os.environ["RAY_ADDRESS"])  # before the plan is printed
    if "image" in cfg.feature_names:
        raise UserError("--features: grid does not take image features; run `genre-local train --image-file ...` for them")
    chosen = grid_lib.parse_models(models)
    if "dire" in chosen:
        # DIRE's encoder folder as `train` resolves it (the embedded SmolLM2 unless [train]
        # encoder names one): the run's config names it, so a stored DIRE cell matches.
        cfg = with_overrides(cfg, encoder=context.dire_encoder(prepare=False))
    specs, wanted = grid_lib.parse_variants(variants, cfg.ng_k), grid_lib.parse_llm(llm)
    with open_existing_store(context.db_path, wait_s=PLAN_LOCK_WAIT_S) as store:
        store.require_dataset(dataset)
        spec = grid_lib.GridSpec(dataset, chosen, specs, cfg,
                                 grid_lib.resolve_sources(store.conn, dataset, specs, wanted))
        plan = grid_lib.plan_grid(store.conn, spec)
    console = stderr_console()
    pairs = sum(len(spec.sources.get(v.name, (None,))) for v in spec.variants)
    console.print(f"grid on {dataset}: {len(spec.models)} model(s) x {pairs} variant(s) x "
                  f"{cfg.seeds} seed(s) = {plan.total} runs; {len(plan.stored)} stored, {len(plan.todo)} to run"
                  + ("" if dry_run or not plan.todo else f" ({engine}, {workers} at once)"), soft_wrap=True)
    if spec.sources:
        console.print("sources: " + "; ".join(f"{name} from {', '.join(s.label for s in sources)}"
                                              for name, sources in spec.sources.items()),
                      soft_wrap=True, highlight=False)
    if dry_run:
        todo: dict[str, list[int]] = {}  # one line per (model, variant, source): its seeds to run
        for cell in plan.todo:
            todo.setdefault(cell.run_of, []).append(cell.seed)
        for what, cell_seeds in todo.items():
            console.print(f"to run: {what} seed(s) {', '.join(map(str, cell_seeds))}", soft_wrap=True, highlight=False)
    outcomes = []
    if not dry_run:
        if any(cell.model == "dire" for cell in plan.todo):
            context.dire_encoder()  # prepares the embedded model before any cell needs it (once)
        cache_dir = resolve_relative(context.db_path, context.config.paths.cache_dir)
        base = TrainRequest(db_path=Path(context.db_path), model=spec.models[0], dataset=dataset,
                            spec=spec.variants[0], config=cfg, cache_dir=cache_dir,
                            checkpoint_base=Path(checkpoint_dir or cache_dir / "checkpoints"))

        def on_cell(progress: grid_lib.GridProgress) -> None:
            done = progress.outcome
            what = (f"stored run {', '.join(done.run_ids)}" if done.run_ids
                    else f"already stored as {', '.join(done.already_stored)}")
            auc = f"; {done.eval_split} auc {done.auc:.4f}" if done.auc is not None else ""
            console.print(f"[{progress.done}/{progress.total}] {done.cell.label}: {what}"
                          f"{' (resumed)' if done.resumed else ''}{auc} in {_clock(done.seconds)}; "
                          f"ETA {_clock(progress.eta_s)}", soft_wrap=True, highlight=False)

        outcomes = grid_lib.execute(plan, base, workers=workers, engine=engine, ray_address=ray_address,
                                    on_cell=on_cell)
    stdout_console().print(f"grid on {dataset}: {len(plan.stored) + len(outcomes)}/{plan.total} runs stored"
                           + (" (dry run)" if dry_run else ""))
    if as_json:
        emit_json({
            "dataset": dataset, "total": plan.total, "skipped": len(plan.stored), "trained": len(outcomes),
            "planned": [{"model": c.model, "variant": c.variant, "source": c.source.label if c.source else None,
                         "seed": c.seed} for c in plan.todo],
            "stored_runs": [run_id for o in outcomes for run_id in (*o.run_ids, *o.already_stored)],
        })
