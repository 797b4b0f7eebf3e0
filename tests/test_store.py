"""Store: migrations, transactions, a locked store and a damaged file give one-line errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.errors import StoreError
from genre_local.store import open_store
from genre_local.store.connection import load_migrations, resolve_db_path

runner = CliRunner()


def test_migrations_apply_once_in_order(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    newest = load_migrations()[-1].version
    with open_store(db) as store:
        assert store.schema_version() == newest
        versions = [r[0] for r in store.conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()]
        assert versions == [m.version for m in load_migrations()]
    with open_store(db) as store:  # reopening applies nothing twice
        assert store.conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(versions)


def test_store_newer_than_code_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with open_store(db) as store:
        store.conn.execute("INSERT INTO schema_version VALUES (999, 'future', now())")
    with pytest.raises(StoreError, match="schema version 999"):
        open_store(db)


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.duckdb") as store:
        with pytest.raises(ValueError), store.transaction() as conn:
            conn.execute("INSERT INTO user_truth VALUES ('d', 'U1', ['health'], 'Ohio')")
            raise ValueError("boom")
        assert store.conn.execute("SELECT count(*) FROM user_truth").fetchone()[0] == 0


def test_damaged_file_is_one_line_exit_2(tmp_path: Path) -> None:
    db = tmp_path / "broken.duckdb"
    db.write_bytes(b"this is not a duckdb file at all" * 200)
    with pytest.raises(StoreError, match="broken.duckdb"):
        open_store(db)
    result = runner.invoke(app, ["--db", str(db), "data", "stats", "--name", "x"])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "broken.duckdb" in result.stderr


def test_locked_store_is_one_line_exit_2(tmp_path: Path) -> None:
    db = tmp_path / "locked.duckdb"
    open_store(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db)!r}); print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        result = runner.invoke(app, ["--db", str(db), "data", "stats", "--name", "x"])
        assert result.exit_code == 2, result.output
        assert "locked by another genre-local process" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    open_store(db).close()  # usable again once the other writer is gone


def test_missing_parent_folder(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "no" / "such" / "g.duckdb")


def test_db_path_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GENRE_DB", raising=False)
    assert resolve_db_path(None) == Path("genre.duckdb")
    monkeypatch.setenv("GENRE_DB", str(tmp_path / "env.duckdb"))
    assert resolve_db_path(None) == tmp_path / "env.duckdb"
    assert resolve_db_path(tmp_path / "flag.duckdb") == tmp_path / "flag.duckdb"


def test_failed_insert_inside_transaction_keeps_its_own_error(tmp_path: Path) -> None:
    import pyarrow as pa

    with open_store(tmp_path / "s.duckdb") as store:
        bad = pa.table({"dataset": ["d"], "user_id": [None], "topics": [["health"]], "region": ["Ohio"]})
        with pytest.raises(Exception, match="NOT NULL"), store.transaction():
            store.insert_arrow("user_truth", bad)
        assert store.conn.execute("SELECT count(*) FROM user_truth").fetchall() == [(0,)]
        store.insert_arrow("user_truth", bad.set_column(1, "user_id", pa.array(["U1"])))
        assert store.conn.execute("SELECT count(*) FROM user_truth").fetchall() == [(1,)]
