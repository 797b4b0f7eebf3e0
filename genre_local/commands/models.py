"""`genre-local models ...` (owned by the generation work; issue 3)."""

from __future__ import annotations

import typer

from genre_local.cli_support import command_errors
from genre_local.errors import UserError

app = typer.Typer(help="Prepare and inspect local LLMs.", no_args_is_help=True)


@app.command("prepare")
@command_errors
def prepare(ctx: typer.Context, name: str = typer.Argument("llama", help="Model alias or folder.")) -> None:
    """Turn the embedded SmolLM2 GGUF (alias 'llama') into a local HF safetensors folder."""
    raise UserError("model preparation is not available in this build yet")
