"""`genre-local data synth|import|stats`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from genre_local.cli_support import app_context, command_errors, emit_json, stdout_console
from genre_local.config import with_overrides

app = typer.Typer(help="Create, import and inspect MIND-format datasets.", no_args_is_help=True)


@app.command("synth")
@command_errors
def synth(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="Folder to write (train/, dev/, test/, truth.tsv).")],
    news: Annotated[Optional[int], typer.Option(help="News items drawn (default 1500; genre.toml: synth.news); those nobody clicked or was shown are not written, as in MIND, so news.tsv holds a few fewer.")] = None,
    users: Annotated[Optional[int], typer.Option(help="Number of users (default 600; genre.toml: synth.users).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed; same seed, same bytes (default 7).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a non-empty OUT folder.")] = False,
) -> None:
    """Write a synthetic MIND-format dataset with known user interests (truth.tsv)."""
    from genre_local.data.synth import SynthSpec, write_synthetic_mind

    cfg = with_overrides(app_context(ctx).config.synth, news=news, users=users, seed=seed)
    summary = write_synthetic_mind(out, SynthSpec(news=cfg.news, users=cfg.users, seed=cfg.seed), force=force)
    stdout_console().print(
        f"wrote {out}: {summary.news} news, {summary.users} users, "
        + ", ".join(f"{n} {split} impressions" for split, n in summary.impressions.items())
    )


@app.command("import")
@command_errors
def import_(
    ctx: typer.Context,
    src: Annotated[Path, typer.Argument(help="MIND root with train/ and dev/ (or MINDsmall_train/ ...), optional test/.")],
    name: Annotated[str, typer.Option("--name", help="Dataset name in the store.")],
    replace: Annotated[bool, typer.Option("--replace", help="Replace an existing dataset of that name.")] = False,
) -> None:
    """Import a MIND-format folder into the store (all or nothing)."""
    from genre_local.data.mind_import import import_mind
    from genre_local.progress import task_progress

    context = app_context(ctx)
    with context.open_store() as store, task_progress() as progress:
        result = import_mind(store, src, name, replace=replace, progress=progress)
    stdout_console().print(
        f"imported '{name}' from {src}: {result.news} news, "
        + ", ".join(f"{n} {split} impressions" for split, n in result.impressions.items())
        + (", truth for {} users".format(result.truth_users) if result.truth_users else "")
        + f" in {result.seconds:.1f}s into {context.db_path}"
    )


@app.command("stats")
@command_errors
def stats(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Dataset name in the store.")],
    as_json: Annotated[bool, typer.Option("--json", help="Also print one JSON object as the last stdout line.")] = False,
) -> None:
    """News, users, impressions per split, clicks, cold/warm users, history lengths, categories."""
    from genre_local.data.stats import dataset_stats

    with app_context(ctx).open_store(read_only=True) as store:  # reads only: never creates or migrates a file
        result = dataset_stats(store, name)
    console = stdout_console()
    table = Table(title=f"dataset {name}", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("news", f"{result.news:,}")
    table.add_row("users", f"{result.users:,}")
    for split, count in result.impressions.items():
        table.add_row(f"impressions ({split})", f"{count:,}")
    for split, count in result.clicks.items():
        table.add_row(f"clicks ({split})", f"{count:,}")
    table.add_row("cold users (1-5 history)", f"{result.cold_users:,}")
    table.add_row("warm users (>5 history)", f"{result.warm_users:,}")
    table.add_row("users with empty history", f"{result.empty_history_users:,}")
    for pct, value in result.history_percentiles.items():
        table.add_row(f"history length {pct}", f"{value:g}")
    table.add_row("users with truth profiles", f"{result.truth_users:,}")
    console.print(table)
    categories = Table(title="categories", show_header=True)
    categories.add_column("category")
    categories.add_column("news", justify="right")
    for category, count in result.categories.items():
        categories.add_row(category, f"{count:,}")
    console.print(categories)
    if as_json:
        emit_json(result.as_json())
