"""Opening the DuckDB file, applying forward migrations, and explicit transactions.

Connections are meant to be short-lived: a command opens the store, reads what it needs or
writes its results, and closes it. DuckDB allows one writing process per file, so holding a
connection through hours of training would lock out `report` and every other command.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa

from genre_local.errors import StoreError, UserError

DEFAULT_DB = Path("genre.duckdb")
# DuckDB file layout: a main header and two database headers of 4 KiB, then whole blocks.
_FILE_HEADERS_BYTES = 3 * 4096


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """Every `NNN_name.sql` file in store/migrations, ordered by version."""
    found = []
    for entry in resources.files("genre_local.store").joinpath("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        prefix, _, rest = entry.name.partition("_")
        found.append(Migration(int(prefix), rest.removesuffix(".sql"), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in store/migrations: {versions}")
    return found


def _describe_open_failure(path: Path, exc: Exception) -> str:
    text = str(exc)
    lowered = text.lower()
    if "lock" in lowered:
        return (
            f"store {path} is locked by another genre-local process; wait for it to finish "
            "or pass --db to use another file"
        )
    if "not a valid duckdb" in lowered or "corrupt" in lowered or "magic" in lowered or "serializ" in lowered:
        return f"store {path} is not a readable DuckDB file (damaged?); move it away or pass --db"
    if "could not read enough bytes" in lowered:
        return f"store {path} is damaged (the file is shorter than DuckDB expects: truncated?); restore it from a copy or pass --db"
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"cannot open store {path}: {first_line}"


class Store:
    """An open DuckDB store with its schema brought up to date."""

    def __init__(self, path: Path, conn: duckdb.DuckDBPyConnection, read_only: bool):
        self.path = path
        self.conn = conn
        self.read_only = read_only

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All-or-nothing: an exception inside rolls every write back."""
        self.conn.execute("BEGIN TRANSACTION")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    # -- schema ----------------------------------------------------------------------------
    def schema_version(self) -> int:
        row = self.conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        return int(row[0])

    def _has_schema_version(self) -> bool:
        return bool(
            self.conn.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = 'main' AND table_name = 'schema_version' AND NOT temporary"
            ).fetchone()[0]
        )

    def _foreign_objects(self) -> list[str]:
        """Tables and views of someone else's database (the file has no schema_version)."""
        rows = self.conn.execute(
            "SELECT schema_name || '.' || table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() AND NOT internal AND NOT temporary "
            "UNION ALL SELECT schema_name || '.' || view_name FROM duckdb_views() "
            "WHERE database_name = current_database() AND NOT internal AND NOT temporary ORDER BY 1"
        ).fetchall()
        return [r[0] for r in rows]

    def _refuse_if_not_ours(self) -> None:
        """A DuckDB file without schema_version is ours only when it is empty."""
        if self._has_schema_version():
            return
        foreign = self._foreign_objects()
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise StoreError(
                f"store {self.path} is a DuckDB file of something else (it holds {shown} and no "
                "genre-local schema_version); pass --db with a genre-local store or a new file"
            )
        if self.read_only:
            raise StoreError(
                f"store {self.path} holds no genre-local data yet; import a dataset first (genre-local data import)"
            )

    def _migrate(self) -> None:
        self._refuse_if_not_ours()
        has_table = self._has_schema_version()
        current = self.schema_version() if has_table else 0
        migrations = load_migrations()
        newest = migrations[-1].version if migrations else 0
        if current > newest:
            raise StoreError(
                f"store {self.path} has schema version {current}, newer than this genre-local "
                f"knows ({newest}); upgrade genre-local"
            )
        for migration in migrations:
            if migration.version <= current:
                continue
            with self.transaction() as conn:
                if not has_table:
                    # Inside the first migration's transaction: a failed migration leaves no
                    # empty schema_version behind to make the file look like ours.
                    conn.execute(
                        "CREATE TABLE schema_version ("
                        " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
                    )
                    has_table = True
                conn.execute(migration.sql)
                conn.execute(
                    "INSERT INTO schema_version VALUES (?, ?, ?)",
                    [migration.version, migration.name, now_utc()],
                )

    # -- writes ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def registered(self, name: str, rows: pa.Table) -> Iterator[str]:
        """Expose an Arrow table to SQL as `name` for the duration of the block."""
        # DuckDB 2 refuses register() while an earlier execute() has unread rows (a
        # fetchone() leaves them); finishing that result first makes callers order-independent.
        self.conn.complete()
        self.conn.register(name, rows)
        try:
            yield name
        except BaseException:
            # Inside an aborted transaction DuckDB refuses even unregister(); that must not
            # replace the error that aborted it. The view is connection-local, so leaving it
            # registered costs nothing.
            with contextlib.suppress(duckdb.Error):
                self.conn.unregister(name)
            raise
        self.conn.unregister(name)

    def insert_arrow(self, table: str, rows: pa.Table) -> None:
        """Insert a whole Arrow table in one statement (columns matched by name)."""
        if rows.num_rows == 0:
            return
        with self.registered(f"_insert_{table}", rows) as view:
            columns = ", ".join(f'"{c}"' for c in rows.column_names)
            self.conn.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {view}")

    # -- datasets --------------------------------------------------------------------------
    def dataset_names(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM datasets ORDER BY name").fetchall()]

    def require_dataset(self, name: str) -> None:
        """Fail with a one-line hint when the dataset is not in the store."""
        exists = self.conn.execute("SELECT count(*) FROM datasets WHERE name = ?", [name]).fetchone()[0]
        if not exists:
            known = ", ".join(self.dataset_names()) or "none"
            raise UserError(
                f"dataset '{name}' is not in store {self.path} (known: {known}); "
                f"import it with `genre-local data import SRC --name {name}`"
            )


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def resolve_db_path(flag: Path | None) -> Path:
    """--db flag, else $GENRE_DB, else ./genre.duckdb."""
    if flag is not None:
        return flag
    env = os.environ.get("GENRE_DB")
    return Path(env) if env else DEFAULT_DB


def open_store(path: Path, read_only: bool = False) -> Store:
    """Open the store; StoreError with one line on failure.

    Writable: create the file if needed and migrate it, refusing a DuckDB file that is not
    ours (no schema_version) unless it is empty. Read-only: never create or change anything;
    the file must exist and be a genre-local store at this version.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise StoreError(f"store {path} does not exist; import a dataset first (genre-local data import) or pass --db")
    if path.parent and not path.parent.exists():
        raise StoreError(f"folder {path.parent} for store {path} does not exist; create it or pass another --db")
    if path.is_dir():
        raise StoreError(f"store path {path} is a folder; pass a file path with --db")
    try:
        conn = duckdb.connect(str(path), read_only=read_only)
    except (duckdb.Error, OSError) as exc:
        raise StoreError(_describe_open_failure(path, exc)) from exc
    store = Store(path, conn, read_only)
    try:
        _refuse_truncated(store)
        if read_only:
            _check_read_only_schema(store)
        else:
            store._migrate()
    except duckdb.Error as exc:
        conn.close()
        raise StoreError(_describe_open_failure(path, exc)) from exc
    except BaseException:
        conn.close()
        raise
    return store


def _refuse_truncated(store: Store) -> None:
    """A file cut off (a partial copy, a disk that ran out) is refused before any command runs.

    DuckDB opens such a file and fails only when a query reaches a missing block, mid-command.
    A complete file is its headers plus whole blocks, and holds at least every used block;
    `total_blocks` is no bound (free blocks at the end are not always in the file). Skipped
    while a write-ahead log exists: replaying it may count blocks not yet in the file.
    """
    if store.path.with_name(store.path.name + ".wal").exists():
        return
    row = store.conn.execute(
        "SELECT block_size, used_blocks FROM pragma_database_size() WHERE database_name = current_database()"
    ).fetchone()
    if row is None:
        return
    block_size, used_blocks = int(row[0]), int(row[1])
    size = store.path.stat().st_size
    if size == 0 or block_size <= 0:
        return
    body = size - _FILE_HEADERS_BYTES
    if body < 0 or body % block_size or size < _FILE_HEADERS_BYTES + block_size * used_blocks:
        raise StoreError(
            f"store {store.path} is damaged (truncated: {size} bytes is not its headers plus the "
            f"{used_blocks} blocks it uses); restore it from a copy or pass --db"
        )


def interrupted_query(exc: BaseException) -> bool:
    """Whether `exc` is a Ctrl-C that landed inside a DuckDB query: DuckDB catches the
    KeyboardInterrupt and raises its own error ("Query interrupted") in its place."""
    if isinstance(exc, duckdb.InterruptException):
        return True
    return type(exc) is RuntimeError and str(exc).strip() == "Query interrupted"


def damaged_store_error(exc: BaseException) -> StoreError | None:
    """The one-line StoreError for a DuckDB failure that means a damaged (e.g. truncated) file.

    DuckDB opens a truncated file and fails only when a query reaches a missing block, in the
    middle of a command; the CLI's error policy asks this to tell such a failure (a user's
    file problem, exit 2) from an internal error.
    """
    if not isinstance(exc, duckdb.Error):
        return None
    text = str(exc)
    if "could not read enough bytes" not in text.lower():
        return None
    quoted = re.search(r'from file "([^"]+)"', text)
    where = quoted.group(1) if quoted else "file"
    return StoreError(
        f"store {where} is damaged (shorter than DuckDB expects: truncated?); restore it from a copy or pass --db"
    )


def _check_read_only_schema(store: Store) -> None:
    store._refuse_if_not_ours()
    migrations = load_migrations()
    newest = migrations[-1].version if migrations else 0
    current = store.schema_version()
    if current != newest:
        raise StoreError(
            f"store {store.path} is at schema version {current}, this genre-local needs {newest}; "
            "open it once with a writing command (genre-local data import, generate or train) to upgrade it"
        )
