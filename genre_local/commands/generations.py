"""`genre-local generations show|list|import`: a seeded sample of stored generation inputs and
outputs, the generation sources (LLM, prompt set) per dataset and task, and outputs produced
elsewhere brought in as a source of their own."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from genre_local.cli_support import app_context, command_errors, emit_json, stdout_console
from genre_local.errors import UserError

app = typer.Typer(help="List, show and import generations (outputs of any LLM, by source).", no_args_is_help=True)


@app.command("show")
@command_errors
def show(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset whose generations to show.", show_default=False)],
    task: Annotated[str, typer.Option("--task", help="summarize | profile | news | chain", show_default=False)],
    llm: Annotated[
        Optional[str],
        typer.Option("--llm", help="Generation source: a label LLM/SET[+METHOD], a stored model id, or its folder "
                     "name (the part before '@'), optionally +score, +label or +label-score. Default: every source that "
                     "generated the task.", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Outputs per source: valid ones, and as many invalid ones.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Sample seed: the same seed shows the same inputs.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Also print one JSON object as the last stdout line.")] = False,
) -> None:
    """Inputs beside outputs: original vs enhanced titles, histories vs profiles, cold users vs their
    synthetic news, and invalid outputs with their errors."""
    from genre_local.llm.tasks import TASKS
    from genre_local.report.sample_tables import sample_set_renderables
    from genre_local.report.samples import collect_samples, matching_sources
    from genre_local.store.results import load_generation_sources

    if task not in TASKS:
        raise UserError(f"--task {task!r} is unknown; choose one of {', '.join(TASKS)}")
    if limit < 1:
        raise UserError(f"--limit {limit} must be at least 1")
    context = app_context(ctx)
    if not context.db_path.exists():
        raise UserError(f"store {context.db_path} does not exist; import a dataset first (genre-local data import) or pass --db")
    with context.open_store(read_only=True) as store:
        store.require_dataset(dataset)
        stored = [s.source for s in load_generation_sources(store, dataset) if s.task == task]
        if not stored:
            raise UserError(f"no '{task}' generations stored for dataset '{dataset}'; "
                            f"run `genre-local generate --dataset {dataset} --task {task}` first")
        sources = matching_sources(stored, llm)
        if not sources:
            raise UserError(f"--llm {llm!r} generated no '{task}' outputs for dataset '{dataset}'; "
                            f"stored sources: {', '.join(s.label for s in sorted(stored))}")
        sets = [collect_samples(store, dataset, task, s.llm, limit, seed, s.prompt_set, s.method) for s in sources]
    console = stdout_console()
    for sample_set in sets:
        for renderable in sample_set_renderables(sample_set):
            console.print(renderable)
    if as_json:
        emit_json({"dataset": dataset, "task": task, "seed": seed, "limit": limit,
                   "llms": [dataclasses.asdict(s) | {"source": s.source} for s in sets]})


@app.command("list")
@command_errors
def list_sources(
    ctx: typer.Context,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Only this dataset (default: all).",
                                                   show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Also print one JSON object as the last stdout line.")] = False,
) -> None:
    """The generation sources (LLM/prompt set, +METHOD for profiles not generated) per dataset and
    task: outputs, validity and cost. A source's label is what `train --llm` takes."""
    from rich.measure import Measurement
    from rich.table import Table

    from genre_local.report.format import fmt_known
    from genre_local.store.results import load_source_summaries

    context = app_context(ctx)
    if not context.db_path.exists():
        raise UserError(f"store {context.db_path} does not exist; import a dataset first (genre-local data import) or pass --db")
    with context.open_store(read_only=True) as store:
        if dataset is not None:
            store.require_dataset(dataset)
        rows = load_source_summaries(store, dataset)
    console = stdout_console()
    if not rows:
        console.print("no generations stored" + (f" for dataset '{dataset}'" if dataset else "")
                      + "; run `genre-local generate` or `genre-local generations import`")
    else:
        table = Table(title="generation sources", title_justify="left")
        for name in ("dataset", "task", "source (--llm)", "provenance", "inputs", "valid", "tokens in",
                     "tokens out", "engine+start s", "cost", "dtype"):  # with start-up, unlike Table 8a's engine s
            table.add_column(name, no_wrap=True, justify="right" if name in (
                "inputs", "valid", "tokens in", "tokens out", "engine+start s", "cost") else "left")

        for r in rows:
            share = f"{r.valid:,} ({100.0 * r.valid / r.inputs:.0f}%)" if r.inputs else "0"
            # A local source without --price-per-hour has no money cost ("—"); an imported one's
            # costs are unknown unless its file gave them.
            cost = fmt_known(r.cost, ".4g") if r.cost is not None or "imported" in r.provenance else "—"
            engine = fmt_known(r.engine_seconds, ",.1f")
            if r.charged_to is not None:  # the labels: counted in the run rows of the task that needed them
                engine = cost = f"in {r.charged_to}"
            table.add_row(r.dataset, r.task, r.label, r.provenance, f"{r.inputs:,}", share,
                          fmt_known(r.prompt_tokens, ","), fmt_known(r.completion_tokens, ","), engine, cost,
                          r.dtype or "—")  # "—": no run of the source recorded its dtype
        if any(r.charged_to for r in rows):
            table.caption = ("label, label_scores: the labelling profilers' per-news labels (and scores); their engine "
                             "time and cost are counted in the same source's row of the task that needed them "
                             "(profile or chain).")
        # Never squeezed to a narrow terminal (or the 80 columns of a pipe): the source is the
        # value to pass to --llm, and a cut one ends in an ellipsis. Wider lines wrap instead.
        console.width = max(console.width, Measurement.get(console, console.options.update_width(10_000), table).maximum)
        console.print(table)
    if as_json:
        # null costs are unknown (imported outputs without those columns), never 0
        emit_json({"sources": [dataclasses.asdict(r) | {"source": r.label} for r in rows]})


@app.command("import")
@command_errors
def import_file(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="TSV, CSV or JSONL: an id column and the output (plain text or "
                                         "the task's JSON).", show_default=False)],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset the ids belong to.", show_default=False)],
    task: Annotated[str, typer.Option("--task", help="summarize | profile | news | chain", show_default=False)],
    llm: Annotated[str, typer.Option("--llm", help="Name of the LLM that wrote the outputs (the source's LLM).",
                                     show_default=False)],
    prompt_set: Annotated[str, typer.Option("--prompt-set", help="Prompt set the outputs were written with.")] = "imported",
    per_user: Annotated[Optional[int], typer.Option(
        "--per-user", help="news/chain: items kept per user (default: as many as each row has).",
        show_default=False)] = None,
    skip_invalid: Annotated[bool, typer.Option(
        "--skip-invalid", help="Store the valid rows and count the rest (default: any bad row stores nothing).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Also print one JSON object as the last stdout line.")] = False,
) -> None:
    """Store outputs produced elsewhere (e.g. GENRE's released GPT-3.5 outputs) as a generation
    source with provenance `imported`; each row is validated with the task's own parser."""
    from genre_local.llm.tasks import TASKS
    from genre_local.pipeline.import_generations import ImportRequest, file_format, import_generations

    if task not in TASKS:
        raise UserError(f"--task {task!r} is unknown; choose one of {', '.join(TASKS)}")
    file_format(file)
    if not file.is_file():
        raise UserError(f"{file} does not exist or is not a file")
    context = app_context(ctx)
    if not context.db_path.exists():
        raise UserError(f"store {context.db_path} does not exist; import a dataset first (genre-local data import) or pass --db")
    request = ImportRequest(path=file, dataset=dataset, task=TASKS[task], llm=llm, prompt_set=prompt_set,
                            skip_invalid=skip_invalid, per_user=per_user)
    with context.open_store() as store:
        result = import_generations(store, request)
    skipped = f"; skipped {len(result.skipped):,} invalid row(s)" if result.skipped else ""
    if result.prompt_tokens is None or result.completion_tokens is None:
        tokens = "token cost unknown (the file has no prompt_tokens/completion_tokens on every row)"
    else:
        tokens = f"{result.prompt_tokens:,} tokens in, {result.completion_tokens:,} out"
    stdout_console().print(f"imported {result.stored:,} {task} output(s) for {dataset} as source "
                           f"{result.source.label}{skipped}; {tokens}; train on them with --llm {result.source.label}")
    if as_json:
        emit_json({"dataset": dataset, "task": task, "source": result.source.label, "run_id": result.run_id,
                   "stored": result.stored, "skipped": len(result.skipped),
                   "skipped_lines": [p.line for p in result.skipped],
                   "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens})
