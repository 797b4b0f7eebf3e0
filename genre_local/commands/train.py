"""`genre-local train` and `genre-local predict` (owned by the recommender work; issue 4)."""

from __future__ import annotations

import typer

from genre_local.cli_support import command_errors
from genre_local.errors import UserError


@command_errors
def train(ctx: typer.Context) -> None:
    """Train a recommender (naml|lstur|nrms|plmnr|bst|dcn|pnn|din) on a dataset variant."""
    raise UserError("training is not available in this build yet")


@command_errors
def predict(ctx: typer.Context) -> None:
    """Write a MIND leaderboard prediction file for an unlabeled test split."""
    raise UserError("prediction is not available in this build yet")
