"""The Typer application: parse flags, call the library, render results. Nothing heavy here.

Heavy imports (torch, transformers, vLLM) happen inside the commands that need them, so
`genre-local --help` and the data commands start fast, and vLLM's worker processes can
re-import this module safely.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import typer.core

# typer vendors click and re-exports only some of its exceptions; these are the classes its
# parser raises.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from genre_local import quiet
from genre_local.cli_support import AppContext, print_error
from genre_local.commands import data as data_commands
from genre_local.commands import demo as demo_command
from genre_local.commands import generate as generate_command
from genre_local.commands import generations as generations_commands
from genre_local.commands import grid as grid_command
from genre_local.commands import models as models_commands
from genre_local.commands import report as report_command
from genre_local.commands import train as train_commands
from genre_local.config import load_config
from genre_local.errors import UserError
from genre_local.store.connection import resolve_db_path


class OneLineErrorGroup(typer.core.TyperGroup):
    """Click's own errors (unknown option, bad value, missing argument) end like ours: one
    `error:` line, then click's hint on where the help is, exit code 2."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as exc:  # a bare group: its help, as click prints it
            exc.show()
            sys.exit(exc.exit_code)
        except UsageError as exc:
            print_error(" ".join(exc.format_message().split()))
            if exc.ctx is not None and exc.ctx.command.get_help_option(exc.ctx) is not None:
                print(f"Try '{exc.ctx.command_path} {exc.ctx.help_option_names[0]}' for help.", file=sys.stderr, flush=True)
            sys.exit(exc.exit_code)
        except ClickException as exc:
            print_error(" ".join(exc.format_message().split()))
            sys.exit(exc.exit_code)
        except typer.Abort:
            print_error("aborted")
            sys.exit(1)
        # Non-standalone click returns the exit code of a typer.Exit, else the command's result.
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="genre-local",
    cls=OneLineErrorGroup,
    help="Offline GENRE: enrich a MIND-format news dataset with a local LLM, then train "
    "news recommenders on the original and enriched data. Everything lives in one DuckDB file.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Help texts are plain text: "[default 2]" or "[models]" must print as written, not be
    # swallowed as Rich markup.
    rich_markup_mode=None,
)
app.add_typer(data_commands.app, name="data")
app.add_typer(models_commands.app, name="models")
app.add_typer(generations_commands.app, name="generations")
app.command("generate")(generate_command.generate)
app.command("train")(train_commands.train)
app.command("predict")(train_commands.predict)
app.command("grid")(grid_command.grid)
app.command("report")(report_command.report)
app.command("demo")(demo_command.demo)


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        Optional[Path],
        typer.Option("--db", help="DuckDB store file (env GENRE_DB; default ./genre.duckdb).", show_default=False),
    ] = None,
    config: Annotated[
        Optional[Path],
        typer.Option("--config", help="Config file (env GENRE_CONFIG; default ./genre.toml if present).", show_default=False),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors (implies --verbose).")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show third-party logs, warnings and progress bars (vLLM, torch, transformers).")
    ] = False,
) -> None:
    # Before any command imports torch, vLLM or transformers: they read these settings on import.
    quiet.install(verbose=verbose or debug)
    try:
        loaded = load_config(config)
    except UserError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from None
    ctx.obj = AppContext(db_path=resolve_db_path(db), config=loaded, debug=debug)
