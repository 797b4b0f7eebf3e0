"""Issue 9 ("which LLM wrote what"): each generation_runs row records the dtype the engine
resolved and computed in (migration 011), since dtype "auto" differs between machines. It is
provenance only: never part of the fingerprint, so a machine of another dtype regenerates nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.store import open_store
from tests.support_generate import FakeBackend, build_store, run_fake, store_rows

runner = CliRunner()


class OtherDtypeBackend(FakeBackend):
    """The same answers from an engine that says it computes in another dtype."""

    dtype = "other"


def test_each_run_row_records_the_engines_dtype_and_list_shows_it(tmp_path: Path) -> None:
    db = build_store(tmp_path / "s.duckdb")
    run_fake(db, tasks=("summarize", "profile"))
    assert store_rows(db, "SELECT task, dtype FROM generation_runs ORDER BY task") == [
        ("profile", "fake"), ("summarize", "fake")]
    result = runner.invoke(app, ["--db", str(db), "generations", "list", "--json"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert {(s["task"], s["dtype"]) for s in json.loads(result.stdout.strip().splitlines()[-1])["sources"]} == {
        ("profile", "fake"), ("summarize", "fake")}
    assert "dtype" in result.stdout and "fake" in result.stdout


def test_dtype_is_not_in_the_fingerprint_another_dtype_regenerates_nothing(tmp_path: Path) -> None:
    db = build_store(tmp_path / "s.duckdb")
    run_fake(db, tasks=("summarize",))
    stats, backend, run_id = run_fake(db, tasks=("summarize",), backend=OtherDtypeBackend())
    assert stats[0].requests > 0 and stats[0].skipped == stats[0].requests and not backend.calls
    # That run started no engine: its row knows no dtype. It wrote none of the source's outputs,
    # so the source names the dtype of the one that did, without an "unknown" beside it.
    assert store_rows(db, "SELECT dtype, new FROM generation_runs WHERE run_id = ?", [run_id]) == [(None, 0)]
    from genre_local.store.results import load_source_summaries

    with open_store(db, read_only=True) as store:
        assert [s.dtype for s in load_source_summaries(store)] == ["fake"]


@pytest.mark.parametrize("method", ["label", "label-score"])
def test_a_labelling_profilers_source_has_the_dtype_of_the_engine_that_made_its_labels(
        tmp_path: Path, method: str) -> None:
    """Regression: a labelling profiler's profiles are aggregated from stored labels without an
    engine; round 2 (labels reused) recorded no dtype and `generations list` showed
    "<dtype>,unknown" for a source every output of which an engine of one dtype decided."""
    from genre_local.store.results import load_source_summaries

    db = build_store(tmp_path / "s.duckdb")
    run_fake(db, tasks=("profile",), profile_method=method, backend=OtherDtypeBackend())
    stats, backend, run_id = run_fake(db, tasks=("profile",), profile_method=method, rounds=2)
    assert not backend.calls and not backend.score_calls  # round 2 reused the labels: no engine started
    assert store_rows(db, "SELECT round, new, dtype FROM generation_runs WHERE run_id = ?", [run_id]) == [
        (1, 0, None), (2, stats[-1].new, None)]
    assert stats[-1].new > 0
    with open_store(db, read_only=True) as store:
        dtypes = {(s.task, s.method): s.dtype for s in load_source_summaries(store)}
    labels = "label" if method == "label" else "label_scores"
    assert dtypes == {("profile", method): "other", (labels, method): "other"}


def test_a_source_written_in_two_dtypes_names_both(tmp_path: Path) -> None:
    db = build_store(tmp_path / "s.duckdb")
    run_fake(db, tasks=("summarize",), rounds=1)
    run_fake(db, tasks=("summarize",), rounds=2, backend=OtherDtypeBackend())  # round 2 is new work
    assert sorted(store_rows(db, "SELECT round, dtype FROM generation_runs WHERE dtype IS NOT NULL")) == [
        (1, "fake"), (2, "other")]
    from genre_local.store.results import load_source_summaries

    with open_store(db, read_only=True) as store:
        # The second run's round 1 skipped every stored output: it wrote none, and adds no "unknown".
        assert [s.dtype for s in load_source_summaries(store)] == ["fake,other"]


def test_an_old_store_migrates_with_unknown_dtypes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genre_local.store import connection
    from genre_local.store.results import load_source_summaries
    from tests.support_train import add_generation

    real = connection.load_migrations()
    monkeypatch.setattr(connection, "load_migrations", lambda: [m for m in real if m.version < 11])
    db = build_store(tmp_path / "old.duckdb")
    with open_store(db) as store:
        assert "dtype" not in {c[0] for c in store.conn.execute("DESCRIBE generation_runs").fetchall()}
        add_generation(store, "tiny", "summarize", "N1", {"title": "t"}, run_id="old")
        store.conn.execute(
            "INSERT INTO generation_runs BY NAME SELECT 'old' AS run_id, 'tiny' AS dataset, 'summarize' AS task, "
            "'m' AS model, 'vllm' AS backend, 1 AS round, now() AS started_at, 1 AS requests, 1 AS new, "
            "0 AS skipped, 1 AS valid, 0 AS invalid")
    monkeypatch.undo()
    with open_store(db) as store:
        assert store.conn.execute("SELECT run_id, dtype FROM generation_runs").fetchall() == [("old", None)]
        assert [s.dtype for s in load_source_summaries(store)] == [None]
    result = runner.invoke(app, ["--db", str(db), "generations", "list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    line = next(text for text in result.stdout.splitlines() if "summarize" in text)
    assert line.rstrip("│ ").endswith("—")  # the dtype column: no run recorded one


def test_sharded_workers_tell_the_driver_their_dtype(tmp_path: Path) -> None:
    from genre_local.pipeline.distributed import Startup, collect_startups, engines_dtype, record_startup
    from genre_local.pipeline.shards import RunFolder

    folder = RunFolder(tmp_path / "run").create()
    record_startup(folder, "r1", "driver", "cluster", 1.0)
    record_startup(folder, "r1", "w0", "engine", 2.0, "bfloat16")
    found = collect_startups(folder, "r1")
    assert sorted(found, key=lambda s: s.seconds) == [Startup("cluster", 1.0), Startup("engine", 2.0, "bfloat16")]
    assert engines_dtype(found) == "bfloat16"
    # Workers on machines that resolved "auto" differently: both named; no engine: unknown.
    assert engines_dtype([*found, Startup("engine", 3.0, "float32")]) == "bfloat16,float32"
    assert engines_dtype([Startup("cluster", 1.0)]) is None
