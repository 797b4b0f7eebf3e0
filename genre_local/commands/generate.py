"""`genre-local generate` (owned by the generation work; issue 3)."""

from __future__ import annotations

import typer

from genre_local.cli_support import command_errors
from genre_local.errors import UserError


@command_errors
def generate(ctx: typer.Context) -> None:
    """Run a GENRE generation task (summarize | profile | news | chain) with a local LLM."""
    raise UserError("generation is not available in this build yet")
