"""`genre-local generations show`: a seeded sample of stored generation inputs and outputs."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Optional

import typer

from genre_local.cli_support import app_context, command_errors, emit_json, stdout_console
from genre_local.errors import UserError

app = typer.Typer(help="Look at stored generations.", no_args_is_help=True)


@app.command("show")
@command_errors
def show(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset whose generations to show.", show_default=False)],
    task: Annotated[str, typer.Option("--task", help="summarize | profile | news | chain", show_default=False)],
    llm: Annotated[
        Optional[str],
        typer.Option("--llm", help="LLM source: a stored model id, or its folder name (the part before '@'). "
                     "Default: every LLM that generated the task.", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Outputs per LLM: valid ones, and as many invalid ones.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Sample seed: the same seed shows the same inputs.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Also print one JSON object as the last stdout line.")] = False,
) -> None:
    """Inputs beside outputs: original vs enhanced titles, histories vs profiles, cold users vs their
    synthetic news, and invalid outputs with their errors."""
    from genre_local.llm.tasks import TASKS
    from genre_local.report.sample_tables import sample_set_renderables
    from genre_local.report.samples import collect_samples, matching_llms
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
        stored = [s.model for s in load_generation_sources(store, dataset) if s.task == task]
        if not stored:
            raise UserError(f"no '{task}' generations stored for dataset '{dataset}'; "
                            f"run `genre-local generate --dataset {dataset} --task {task}` first")
        llms = matching_llms(stored, llm)
        if not llms:
            raise UserError(f"--llm {llm!r} generated no '{task}' outputs for dataset '{dataset}'; "
                            f"stored LLMs: {', '.join(sorted(stored))}")
        sets = [collect_samples(store, dataset, task, name, limit, seed) for name in llms]
    console = stdout_console()
    for sample_set in sets:
        for renderable in sample_set_renderables(sample_set):
            console.print(renderable)
    if as_json:
        emit_json({"dataset": dataset, "task": task, "seed": seed, "limit": limit,
                   "llms": [dataclasses.asdict(s) for s in sets]})
