"""`genre-local report` (owned by the recommender work; issue 4)."""

from __future__ import annotations

import typer

from genre_local.cli_support import command_errors
from genre_local.errors import UserError


@command_errors
def report(ctx: typer.Context) -> None:
    """Render the paper's tables and plots from stored runs."""
    raise UserError("reports are not available in this build yet")
