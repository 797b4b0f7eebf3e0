"""`genre-local models prepare|list` (the generation work; issue 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genre_local.cli_support import app_context, command_errors, emit_json, stdout_console
from genre_local.config import resolve_relative

app = typer.Typer(help="Prepare and inspect local LLMs.", no_args_is_help=True)


@app.command("prepare")
@command_errors
def prepare(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model alias ('llama' = the embedded SmolLM2) or HF folder.")] = "llama",
    force: Annotated[bool, typer.Option("--force", help="Convert the embedded model again.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Also print one JSON object as the last stdout line.")] = False,
) -> None:
    """Turn the embedded SmolLM2 GGUF (alias 'llama') into a local HF safetensors folder; check other folders."""
    from genre_local.llm.models import EMBEDDED_ALIAS, EMBEDDED_FOLDER, prepare_embedded, resolve_model

    context = app_context(ctx)
    models_dir = resolve_relative(context.db_path, context.config.paths.models_dir)
    if name == EMBEDDED_ALIAS and force:
        prepare_embedded(models_dir / EMBEDDED_FOLDER, force=True)
    resolved = resolve_model(name, models_dir, context.config.models)
    stdout_console().print(f"model '{name}' ready at {resolved.folder} (id {resolved.model_id})")
    if as_json:
        emit_json({"model": name, "folder": str(resolved.folder), "model_id": resolved.model_id})


@app.command("list")
@command_errors
def list_models(ctx: typer.Context) -> None:
    """The model aliases genre-local knows and whether each folder is ready."""
    from rich.table import Table

    from genre_local.llm.models import EMBEDDED_ALIAS, EMBEDDED_FOLDER

    context = app_context(ctx)
    models_dir = resolve_relative(context.db_path, context.config.paths.models_dir)
    table = Table(title="models", show_header=True)
    table.add_column("alias")
    table.add_column("folder")
    table.add_column("ready")
    embedded = models_dir / EMBEDDED_FOLDER
    table.add_row(EMBEDDED_ALIAS, str(embedded), "yes" if (embedded / "config.json").is_file() else "no (prepared on first use)")
    for alias, folder in sorted(context.config.models.items()):
        table.add_row(alias, folder, "yes" if Path(folder, "config.json").is_file() else "no")
    stdout_console().print(table)
