"""What every CLI command shares: the global context and the error policy.

User mistakes (UserError, and the recsys library's RecsysError) and outputs the machine refuses
(a full disk, a read-only folder) end as one line on stderr with exit code 2; anything else is an
internal failure: one line with exit code 1, or the full traceback under --debug.
"""

from __future__ import annotations

import errno
import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from typer._click.core import Context as ClickContext  # typer vendors click (see cli.py)

from genre_local.config import GenreConfig, load_config
from genre_local.errors import UserError
from genre_local.store import Store, open_store
from genre_local.store.connection import damaged_store_error, interrupted_query, resolve_db_path
from recsys.errors import RecsysError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class AppContext:
    db_path: Path
    config: GenreConfig
    debug: bool

    def open_store(self, read_only: bool = False) -> Store:
        """The store of --db. Read-only commands pass read_only=True: a missing file is then a
        one-line "store X does not exist" (never created), and nothing in the file changes."""
        return open_store(self.db_path, read_only=read_only)

    def dire_encoder(self, spec: str | None = None, prepare: bool = True) -> str:
        """DIRE's news encoder as a local folder: `spec` (--encoder), else [train] encoder, else
        the embedded SmolLM2, prepared on first use unless `prepare` is False (then only where it
        will be: a plan needs the name, not the weights). `train` and `grid` both resolve it here,
        so a grid's DIRE cell is the run `train --model dire` stores."""
        from genre_local.config import resolve_relative
        from genre_local.llm.models import EMBEDDED_ALIAS, embedded_folder, resolve_model

        models_dir = resolve_relative(self.db_path, self.config.paths.models_dir)
        chosen = spec or self.config.train.encoder or EMBEDDED_ALIAS
        if chosen == EMBEDDED_ALIAS and not prepare:
            return str(embedded_folder(models_dir))
        return str(resolve_model(chosen, models_dir, self.config.models).folder)


def app_context(ctx: typer.Context) -> AppContext:
    """The global options of the root callback; defaults when a command is invoked bare."""
    root = ctx.find_root()
    if isinstance(root.obj, AppContext):
        return root.obj
    built = AppContext(db_path=resolve_db_path(None), config=load_config(None), debug=False)
    root.obj = built
    return built


def stdout_console(markup: bool = True) -> Console:
    """Standard output's console; `markup=False` where what is printed holds data (labels such as
    "[title,category]", news titles) that Rich would otherwise read as markup and drop."""
    return Console(soft_wrap=True, markup=markup)


def stderr_console() -> Console:
    return Console(stderr=True)


def print_error(message: str) -> None:
    # Plain print, not Rich: the line must stay one line whatever the terminal width.
    print(f"error: {message}", file=sys.stderr, flush=True)


def emit_json(payload: dict[str, Any]) -> None:
    """The machine-readable summary: one JSON object as the last line of stdout."""
    sys.stdout.write(json.dumps(payload, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


# Where an output cannot be written for reasons of the machine, not of genre-local: the user's to
# fix (free space, pick a writable place), like a locked store.
_FULL = "free space there or write elsewhere"
_UNWRITABLE = "write elsewhere"
_WRITE_ERRNOS = {
    errno.ENOSPC: ("the disk is full", _FULL),
    errno.EDQUOT: ("the disk quota is used up", _FULL),
    errno.EFBIG: ("the file would exceed the file-size limit", "raise the limit (ulimit -f) or write elsewhere"),
    errno.EROFS: ("the file system is read-only", _UNWRITABLE),
    errno.EACCES: ("permission denied", _UNWRITABLE),
    errno.EPERM: ("permission denied", _UNWRITABLE),
}


def write_error_line(exc: BaseException) -> str | None:
    """The one line for an OSError that says the output could not be written (a full disk, a
    read-only folder), naming the path where the error carries one; None for other errors."""
    if not isinstance(exc, OSError) or exc.errno not in _WRITE_ERRNOS:
        return None
    reason, advice = _WRITE_ERRNOS[exc.errno]
    where = f"cannot write {exc.filename}" if exc.filename else "cannot write an output file"
    return f"{where}: {reason}; {advice} (--out, --db or [paths] in genre.toml) and rerun"


def command_errors(func: F) -> F:
    """Apply the project's error policy to a Typer command function."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # The context typer hands a command is its vendored click Context, of which typer.Context
        # is a subclass: checking for typer.Context would never find it (and --debug never apply).
        ctx = next((a for a in [*args, *kwargs.values()] if isinstance(a, ClickContext)), None)
        debug = False
        if ctx is not None:
            root = ctx.find_root()
            debug = bool(getattr(root.obj, "debug", False))
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except (UserError, RecsysError) as exc:
            if debug:
                raise
            print_error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise typer.Exit(getattr(exc, "exit_code", 2)) from None
        except KeyboardInterrupt:
            print_error("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:  # internal failure: keep the line, hide the traceback
            if interrupted_query(exc):  # Ctrl-C inside a DuckDB query: the same as anywhere else
                print_error("interrupted")
                raise typer.Exit(130) from None
            if debug:
                raise
            damaged = damaged_store_error(exc)
            if damaged is not None:  # a truncated store surfaces mid-query: the user's file, not a bug
                print_error(str(damaged))
                raise typer.Exit(damaged.exit_code) from None
            unwritable = write_error_line(exc)
            if unwritable is not None:
                print_error(unwritable)
                raise typer.Exit(2) from None
            text = str(exc).strip().splitlines()
            print_error(
                f"internal error: {type(exc).__name__}: {text[0] if text else ''} "
                "(rerun with --debug for the traceback)"
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
