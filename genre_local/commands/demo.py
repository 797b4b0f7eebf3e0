"""`genre-local demo`: every stage end to end on the embedded defaults."""

from __future__ import annotations

import typer

from genre_local.cli_support import command_errors
from genre_local.errors import UserError


@command_errors
def demo(ctx: typer.Context) -> None:
    """Synthetic data -> import -> generation -> training -> report, on the embedded models."""
    raise UserError("the demo is not wired up yet")
