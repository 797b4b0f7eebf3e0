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


# -- typed access to the generation tables (store/generations.py, store/datasets.py) ----------------


def _generation(fingerprint: str = "f1", **changes):
    from datetime import datetime

    from genre_local.store.generations import GenerationRecord

    values = dict(
        fingerprint=fingerprint, dataset="d", task="profile", input_id="U1", model="m", prompt_version="v",
        round=1, attempt=1, run_id="r1", backend="fake", sampling="{}", prompt="[]", raw_output="{}",
        parsed='{"topics": ["health"], "regions": ["Ohio"]}', valid=True, error=None, prompt_tokens=3,
        completion_tokens=2, latency_s=0.5, created_at=datetime(2026, 1, 1, 12, 0, 0),
    )
    values.update(changes)
    return GenerationRecord(**values)


def test_generation_record_fields_are_the_table_columns(tmp_path: Path) -> None:
    from dataclasses import fields

    from genre_local.store.generations import (
        GENERATION_ARROW_SCHEMA, FidelityRecord, GenerationRecord, GenerationRunRecord,
    )

    assert GENERATION_ARROW_SCHEMA.names == [f.name for f in fields(GenerationRecord)]
    with open_store(tmp_path / "s.duckdb") as store:
        for table, record in (("generations", GenerationRecord), ("generation_runs", GenerationRunRecord),
                              ("profile_fidelity", FidelityRecord)):
            columns = [r[0] for r in store.conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position", [table]
            ).fetchall()]
            assert sorted(columns) == sorted(f.name for f in fields(record)), table


def test_write_generations_replaces_a_key_and_matches_columns_by_name(tmp_path: Path) -> None:
    from genre_local.store.generations import profiles_up_to, read_user_profiles, valid_fingerprints, write_generations

    with open_store(tmp_path / "s.duckdb") as store:
        write_generations(store, [_generation("f1", valid=False, parsed=None, error="bad"), _generation("f2", input_id="U2")])
        write_generations(store, [_generation("f1", attempt=2)])  # a retry rewrites its row
        rows = store.conn.execute("SELECT fingerprint, attempt, valid, latency_s, prompt_tokens FROM generations ORDER BY 1").fetchall()
        assert rows == [("f1", 2, True, 0.5, 3), ("f2", 1, True, 0.5, 3)]
        assert valid_fingerprints(store.conn, "d", "profile") == {"f1", "f2"}
        assert valid_fingerprints(store.conn, "d", "news") == set()
        assert profiles_up_to(store.conn, "d", 1)["U1"] == (["health"], ["Ohio"])
        assert read_user_profiles(store.conn, "d") == {"U1": (["health"], ["Ohio"]), "U2": (["health"], ["Ohio"])}
        write_generations(store, [])  # nothing to write is not an error


def test_write_generations_is_all_or_nothing(tmp_path: Path) -> None:
    from genre_local.store.generations import write_generations

    with open_store(tmp_path / "s.duckdb") as store:
        with pytest.raises(Exception, match="NOT NULL"):
            write_generations(store, [_generation("ok"), _generation("broken", raw_output=None)])
        assert store.conn.execute("SELECT count(*) FROM generations").fetchall() == [(0,)]
        write_generations(store, [_generation("ok")])  # the store is usable after the failed batch
        assert store.conn.execute("SELECT count(*) FROM generations").fetchall() == [(1,)]


def test_generation_runs_and_fidelity_rows_by_name(tmp_path: Path) -> None:
    from datetime import datetime

    from genre_local.store.generations import FidelityRecord, GenerationRunRecord, record_fidelity, record_generation_run

    started = datetime(2026, 1, 1, 12, 0, 0)
    run = GenerationRunRecord(
        run_id="r1", dataset="d", task="news", model="m", backend="vllm", round=1, started_at=started, requests=10,
        new=8, skipped=2, valid=7, invalid=1, attempts=9, prompt_tokens=100, completion_tokens=50,
        engine_seconds=4.0, startup_seconds=1.0, wall_seconds=5.0, price_per_hour=2.0, cost=0.0033,
    )
    with open_store(tmp_path / "s.duckdb") as store:
        record_generation_run(store, run)
        from dataclasses import replace

        record_generation_run(store, replace(run, valid=8, invalid=0))  # same (run, task, round): replaced
        assert store.conn.execute(
            "SELECT requests, new, skipped, valid, invalid, attempts, engine_seconds, startup_seconds, wall_seconds, "
            "price_per_hour, cost FROM generation_runs"
        ).fetchall() == [(10, 8, 2, 8, 0, 9, 4.0, 1.0, 5.0, 2.0, 0.0033)]
        record_fidelity(store, FidelityRecord("d", "r1", "m", 1, 0.5, 0.25, 1.0, 4, started))
        assert store.conn.execute(
            "SELECT dataset, run_id, model, round, precision_at_3, recall, region_accuracy, users FROM profile_fidelity"
        ).fetchall() == [("d", "r1", "m", 1, 0.5, 0.25, 1.0, 4)]


def test_view_readers_enhanced_titles_and_synthetic_news(tmp_path: Path) -> None:
    import json

    from genre_local.store.generations import (
        chain_items, enhanced_titles_before, read_enhanced_titles, read_synthetic_news, write_generations,
    )

    items = {"items": [{"title": "Story one", "abstract": "A.", "category": "news"},
                       {"title": "Story two", "abstract": "B.", "category": "sports"}]}
    with open_store(tmp_path / "s.duckdb") as store:
        write_generations(store, [
            _generation("s1", task="summarize", input_id="N1", parsed='{"title": "Old title"}'),
            _generation("s2", task="summarize", input_id="N1", round=2, parsed='{"title": "New title"}'),
            _generation("c1", task="chain", input_id="U1", parsed=json.dumps(items)),
        ])
        assert read_enhanced_titles(store.conn, "d") == {"N1": "New title"}
        assert enhanced_titles_before(store.conn, "d", 1) == {}
        assert enhanced_titles_before(store.conn, "d", 2) == {"N1": "Old title"}
        assert enhanced_titles_before(store.conn, "d", 3) == {"N1": "New title"}
        assert chain_items(store.conn, "d", 1) == {"U1": [("news", "Story one"), ("sports", "Story two")]}
        news = read_synthetic_news(store.conn, "d", "chain")
        assert [(n.user_id, n.position, n.title, n.category) for n in news] == [("U1", 0, "Story one", "news"), ("U1", 1, "Story two", "sports")]
        assert all(n.nid.startswith("G") for n in news) and read_synthetic_news(store.conn, "d", "news") == []


def test_dataset_readers(tmp_path: Path) -> None:
    from genre_local.store.datasets import read_histories, read_news, read_truth
    from tests.support_generate import DATASET, build_store

    db = build_store(tmp_path / "s.duckdb")
    with open_store(db) as store:
        assert [n.nid for n in read_news(store.conn, DATASET)] == ["N1", "N2", "N3", "N4", "N5", "N6", "N7"]
        histories = {u.user_id: u for u in read_histories(store.conn, DATASET)}
        assert histories["U3"].history == ("N4", "N6", "N5") and histories["U3"].cold and not histories["U4"].cold
        truth = read_truth(store.conn, DATASET)
        assert truth["U1"] == (["weather", "disasters", "travel"], "Florida") and truth["U1"].region == "Florida"
        assert read_truth(store.conn, "other") == {} and read_news(store.conn, "other") == []


# ---------------------------------------------------------------- issue 12 (config/store engineer): foreign files,
# read-only opening, truncated files


def _foreign_db(path: Path, *statements: str) -> Path:
    import duckdb

    conn = duckdb.connect(str(path))
    for statement in statements:
        conn.execute(statement)
    conn.close()
    return path


def _tables(path: Path) -> list[str]:
    import duckdb

    conn = duckdb.connect(str(path), read_only=True)
    try:
        return sorted(r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables() WHERE NOT internal").fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize("read_only", [False, True])
def test_someone_elses_duckdb_file_is_refused_and_left_alone(tmp_path: Path, read_only: bool) -> None:
    db = _foreign_db(tmp_path / "other.duckdb", "CREATE TABLE accounts (id INTEGER)", "INSERT INTO accounts VALUES (1)")
    before = db.read_bytes()
    with pytest.raises(StoreError, match=r"other.duckdb is a DuckDB file of something else \(it holds main.accounts"):
        open_store(db, read_only=read_only)
    assert _tables(db) == ["accounts"] and db.read_bytes() == before


def test_foreign_news_table_leaves_no_empty_schema_version_behind(tmp_path: Path) -> None:
    db = _foreign_db(tmp_path / "other.duckdb", "CREATE TABLE news (x INTEGER)")
    with pytest.raises(StoreError, match="something else"):
        open_store(db)
    assert _tables(db) == ["news"]


def test_foreign_file_through_the_cli_is_one_line_exit_2(tmp_path: Path) -> None:
    db = _foreign_db(tmp_path / "other.duckdb", "CREATE TABLE accounts (id INTEGER)")
    from tests.support_mind import write_mind

    for args in (["data", "stats", "--name", "x"], ["data", "import", str(write_mind(tmp_path / "m")), "--name", "x"]):
        result = runner.invoke(app, ["--db", str(db), *args])
        assert result.exit_code == 2, result.output
        assert "is a DuckDB file of something else" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert _tables(db) == ["accounts"]


def test_an_empty_duckdb_file_becomes_a_store(tmp_path: Path) -> None:
    db = _foreign_db(tmp_path / "empty.duckdb")
    with pytest.raises(StoreError, match="holds no genre-local data yet"):
        open_store(db, read_only=True)
    with open_store(db) as store:
        assert store.schema_version() == load_migrations()[-1].version


def test_failed_first_migration_leaves_no_schema_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genre_local.store import connection

    real = connection.load_migrations()
    broken = [connection.Migration(real[0].version, real[0].name, real[0].sql + "\nCREATE TABLE oops (;")]
    monkeypatch.setattr(connection, "load_migrations", lambda: broken)
    db = tmp_path / "s.duckdb"
    with pytest.raises(StoreError):
        open_store(db)
    monkeypatch.undo()
    assert _tables(db) == []  # nothing half-written: the next open starts cleanly
    with open_store(db) as store:
        assert store.schema_version() == real[-1].version


def test_read_only_open_never_creates_or_changes_a_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.duckdb"
    with pytest.raises(StoreError, match=r"store .*none.duckdb does not exist"):
        open_store(missing, read_only=True)
    result = runner.invoke(app, ["--db", str(missing), "data", "stats", "--name", "x"])
    assert result.exit_code == 2 and "does not exist" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []

    db = tmp_path / "s.duckdb"
    open_store(db).close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with open_store(db, read_only=True) as store:
        assert store.read_only and store.dataset_names() == []
        with pytest.raises(Exception, match="read-only"):
            store.conn.execute("INSERT INTO user_truth VALUES ('d', 'U1', ['health'], 'Ohio')")
    result = runner.invoke(app, ["--db", str(db), "data", "stats", "--name", "x"])
    assert result.exit_code == 2 and "dataset 'x' is not in store" in result.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_read_only_open_of_an_older_store_says_how_to_upgrade(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with open_store(db) as store:
        store.conn.execute("DELETE FROM schema_version WHERE version = (SELECT max(version) FROM schema_version)")
    with pytest.raises(StoreError, match="open it once with a writing command"):
        open_store(db, read_only=True)


def test_truncated_store_is_one_line_exit_2(tmp_path: Path) -> None:
    from tests.support_mind import write_mind

    db = tmp_path / "s.duckdb"
    assert runner.invoke(app, ["--db", str(db), "data", "import", str(write_mind(tmp_path / "m")), "--name", "d"]).exit_code == 0
    data = db.read_bytes()
    for keep in (100, 8192):  # cut inside the headers: DuckDB refuses to open it
        cut = tmp_path / f"cut{keep}.duckdb"
        cut.write_bytes(data[:keep])
        for read_only in (False, True):
            with pytest.raises(StoreError, match=rf"cut{keep}.duckdb is damaged"):
                open_store(cut, read_only=read_only)
    for keep in (100, 8192, len(data) // 4, len(data) // 2):
        # Cut among the blocks, DuckDB opens the file and fails when a query reaches a missing block.
        cut = tmp_path / f"cut{keep}.duckdb"
        cut.write_bytes(data[:keep])
        result = runner.invoke(app, ["--db", str(cut), "data", "stats", "--name", "d"])
        assert result.exit_code == 2, result.output
        assert f"cut{keep}.duckdb is damaged" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert "internal error" not in result.stderr
        assert cut.read_bytes() == data[:keep]  # read-only: untouched


def test_damaged_store_error_recognizes_only_short_reads() -> None:
    import duckdb

    from genre_local.store.connection import damaged_store_error

    short = duckdb.IOException('IO Error: Could not read enough bytes from file "/x/s.duckdb": attempted to read 8 bytes')
    mapped = damaged_store_error(short)
    assert mapped is not None and str(mapped).startswith("store /x/s.duckdb is damaged")
    assert damaged_store_error(duckdb.IOException("IO Error: disk quota exceeded")) is None
    assert damaged_store_error(ValueError("Could not read enough bytes")) is None
