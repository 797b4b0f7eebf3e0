"""Rich progress bars on stderr, so stdout stays clean for tables and --json lines."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def task_progress(*extra_columns: object) -> Progress:
    """A progress bar on stderr; silent when stderr is not a terminal (logs, CI, pipes)."""
    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,  # type: ignore[arg-type]
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )
