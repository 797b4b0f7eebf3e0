"""Shard files of generation rows: atomic writes, validation and quarantine, the exactly-once
merge by fingerprint, and the driver loop shared by the N-process and Ray paths (no processes
here: a dispatcher that runs in the test's own process)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genre_local.pipeline.distributed import (
    ShardedExecutor,
    ShardJob,
    WorkersFailed,
    complete_to_shard,
    item_to_row,
    per_worker_options,
    row_to_item,
    tally,
)
from genre_local.llm.backend import EngineOptions
from genre_local.pipeline.plan import PlanSettings, Planner
from genre_local.llm.tasks import TASKS
from genre_local.pipeline.runner import RunSettings, TaskStats
from genre_local.store.generations import GENERATION_ARROW_SCHEMA as GENERATION_SCHEMA
from genre_local.pipeline.shards import RunFolder, merge_ready, read_shard, recover, write_shard, ShardError
from genre_local.store import open_store
from tests.support_generate import DATASET, FakeBackend, build_store, run_fake

SETTINGS = RunSettings(plan=PlanSettings(dataset=DATASET, model_id="fake-model"), backend="fake", batch_size=2)


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return build_store(tmp_path / "g.duckdb")


@pytest.fixture()
def folder(tmp_path: Path) -> RunFolder:
    return RunFolder(tmp_path / "run").create()


def _plan(db: Path, task: str = "summarize", settings: RunSettings = SETTINGS):
    with open_store(db) as store:
        return Planner(store.conn, settings.plan).plan(store.conn, TASKS[task], 1)


def _rows(db: Path, sql: str):
    with open_store(db) as store:
        return store.conn.execute(sql).fetchall()


def _shard(folder: RunFolder, items, run_id: str = "r1", backend=None) -> Path:
    return complete_to_shard(backend or FakeBackend(), items, ShardJob(SETTINGS, run_id, folder), "w0")


def test_shard_is_written_atomically_and_read_back(db: Path, folder: RunFolder):
    items = _plan(db)
    path = _shard(folder, items[:3])
    assert path.parent == folder.pending and path.suffix == ".parquet"
    assert not folder.partial_files()  # the temporary name is gone
    rows = read_shard(path)
    assert rows.schema == GENERATION_SCHEMA
    assert rows.column("fingerprint").to_pylist() == [i.fingerprint for i in items[:3]]
    assert all(rows.column("valid").to_pylist()) and set(rows.column("run_id").to_pylist()) == {"r1"}
    assert write_shard(folder, rows.slice(0, 0), "r1", "w0") is None  # an empty batch leaves no file


def test_merge_stores_each_key_once_and_moves_the_shard(db: Path, folder: RunFolder):
    items = _plan(db)
    first = _shard(folder, items[:4])
    again = _shard(folder, items[2:])  # overlaps the first shard on two keys
    with open_store(db) as store:
        report = merge_ready(store, folder)
    assert [m.path.parent for m in report.merged] == [folder.merged, folder.merged] and not report.quarantined
    assert not first.exists() and not again.exists() and not folder.ready_shards()
    assert _rows(db, "SELECT count(*), count(DISTINCT fingerprint) FROM generations") == [(7, 7)]
    # Merging the same rows again (a crash between commit and move) still leaves one row per key.
    with open_store(db) as store:
        merge_ready(store, folder, [report.merged[0].path])
    assert _rows(db, "SELECT count(*), count(DISTINCT fingerprint) FROM generations") == [(7, 7)]


def test_an_invalid_late_row_never_replaces_a_valid_stored_one(db: Path, folder: RunFolder):
    items = _plan(db)[:2]
    good = _shard(folder, items, run_id="good")
    bad = _shard(folder, items, run_id="bad", backend=FakeBackend(always_bad=True))
    with open_store(db) as store:
        report = merge_ready(store, folder, [good, bad])
    assert [m.written for m in report.merged] == [2, 0]
    assert _rows(db, "SELECT DISTINCT run_id, valid FROM generations") == [("good", True)]


def _damage(path: Path, how: str) -> None:
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "not parquet":
        path.write_text("hello")
    elif how == "missing column":
        pq.write_table(pq.read_table(path).drop_columns(["raw_output"]), path)
    elif how == "wrong type":
        table = pq.read_table(path)
        index = table.column_names.index("round")
        pq.write_table(table.set_column(index, "round", pa.array(["one"] * table.num_rows)), path)
    elif how == "duplicate key":
        table = pq.read_table(path)
        pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), path)
    elif how == "null key":
        table = pq.read_table(path)
        index = table.column_names.index("fingerprint")
        pq.write_table(table.set_column(index, "fingerprint", pa.array([None] * table.num_rows, pa.string())), path)
    elif how == "empty":
        pq.write_table(pq.read_table(path).slice(0, 0), path)


@pytest.mark.parametrize(
    "how, reason",
    [
        ("truncated", "unreadable Parquet"),
        ("not parquet", "unreadable Parquet"),
        ("missing column", "missing columns raw_output"),
        ("wrong type", "columns of the wrong type"),
        ("duplicate key", "a fingerprint twice in one shard"),
        ("null key", "a row without a fingerprint"),
        ("empty", "no rows"),
    ],
)
def test_a_corrupt_shard_is_quarantined_with_a_message_and_nothing_merged(db: Path, folder: RunFolder, how: str, reason: str):
    items = _plan(db)
    bad = _shard(folder, items[:3])
    good = _shard(folder, items[3:5])
    _damage(bad, how)
    with pytest.raises(ShardError, match=reason):
        read_shard(bad)
    with open_store(db) as store:
        report = merge_ready(store, folder)
    assert len(report.quarantined) == 1 and reason in report.quarantined[0].message
    assert report.quarantined[0].message.startswith(f"shard {bad.name} quarantined in {folder.quarantine}")
    assert (folder.quarantine / bad.name).exists() and not bad.exists()
    assert reason in (folder.quarantine / f"{bad.name}.reason.txt").read_text()
    # The good shard beside it is merged; nothing of the bad one is.
    stored = {f for (f,) in _rows(db, "SELECT fingerprint FROM generations")}
    assert stored == {i.fingerprint for i in items[3:5]} and not good.exists()


def test_recover_quarantines_partial_files_left_by_a_dead_writer(db: Path, folder: RunFolder):
    items = _plan(db)
    _shard(folder, items[:2])
    (folder.pending / ".r0-w1-abc.partial").write_bytes(b"PAR1\x00half")
    with open_store(db) as store:
        report = recover(store, folder)
    assert len(report.merged) == 1 and len(report.quarantined) == 1
    assert "partial shard" in report.quarantined[0].reason
    assert not folder.partial_files() and (folder.quarantine / ".r0-w1-abc.partial").exists()


def test_planned_rows_round_trip_through_plain_columns(db: Path):
    for task in ("summarize", "news"):
        for item in _plan(db, task):
            row = item_to_row(item)
            assert all(isinstance(v, (str, int, float)) for v in row.values())
            assert row_to_item(json.loads(json.dumps(row))) == item
    run_fake(db, tasks=("profile",))
    chain = _plan(db, "chain")
    assert chain and row_to_item(item_to_row(chain[0])) == chain[0]


def test_tally_counts_rows_like_the_in_process_loop(db: Path, folder: RunFolder):
    items = _plan(db)
    rows = read_shard(_shard(folder, items, backend=FakeBackend(bad_first=1)))
    stats = TaskStats("summarize", 1)
    tally(stats, rows)
    single, _, _ = run_fake(db, tasks=("summarize",), backend=FakeBackend(bad_first=1), batch_size=100)
    expected = single[0]
    assert (stats.new, stats.valid, stats.invalid, stats.attempts) == (expected.new, expected.valid, expected.invalid, expected.attempts) == (7, 7, 0, 14)
    assert (stats.prompt_tokens, stats.completion_tokens) == (expected.prompt_tokens, expected.completion_tokens)
    bad = TaskStats("summarize", 1)
    tally(bad, read_shard(_shard(folder, items[:2], backend=FakeBackend(always_bad=True))))
    assert bad.invalid == 2 and bad.errors == {"no JSON object in the output": 2}


class InlineDispatch:
    """Runs every batch in this process; `fail_after` batches, then raises like a dead worker."""

    def __init__(self, fail_after: int | None = None):
        self.fail_after = fail_after
        self.seen: list[str] = []

    def __call__(self, todo, job):
        backend = FakeBackend()
        for n, begin in enumerate(range(0, len(todo), job.settings.batch_size)):
            if self.fail_after is not None and n >= self.fail_after:
                raise RuntimeError("worker w0 exited with code -9")
            batch = todo[begin : begin + job.settings.batch_size]
            self.seen += [i.fingerprint for i in batch]
            complete_to_shard(backend, batch, job, "w0")
            yield []  # the executor merges whatever is ready at the end


def test_executor_merges_skips_and_counts(db: Path, folder: RunFolder):
    items = _plan(db)
    _shard(folder, items[:2], run_id="earlier")  # left complete by an earlier, killed run
    stats = TaskStats("summarize", 1)
    dispatch = InlineDispatch()
    ShardedExecutor(db, folder, dispatch, notify=print).execute(items, stats, SETTINGS, "now")
    assert dispatch.seen == [i.fingerprint for i in items[2:]]  # the earlier shard's keys skipped
    assert (stats.skipped, stats.new, stats.valid) == (2, 5, 5)
    assert _rows(db, "SELECT run_id, count(*) FROM generations GROUP BY run_id ORDER BY run_id") == [("earlier", 2), ("now", 5)]


def test_executor_reports_a_failed_worker_after_storing_what_finished(db: Path, folder: RunFolder):
    items = _plan(db)
    stats = TaskStats("summarize", 1)
    with pytest.raises(WorkersFailed, match=r"3 of 7 requests were not completed \(RuntimeError: worker w0 exited with code -9\); the 4 completed are stored"):
        ShardedExecutor(db, folder, InlineDispatch(fail_after=2)).execute(items, stats, SETTINGS, "now")
    assert _rows(db, "SELECT count(*) FROM generations") == [(4,)] and stats.new == 4
    stats = TaskStats("summarize", 1)
    ShardedExecutor(db, folder, InlineDispatch()).execute(items, stats, SETTINGS, "again")
    assert (stats.skipped, stats.new) == (4, 3)
    assert _rows(db, "SELECT count(*), count(DISTINCT fingerprint) FROM generations") == [(7, 7)]


def test_executor_warns_about_a_quarantined_shard(db: Path, folder: RunFolder):
    items = _plan(db)
    _damage(_shard(folder, items[:2], run_id="earlier"), "truncated")
    messages: list[str] = []
    stats = TaskStats("summarize", 1)
    ShardedExecutor(db, folder, InlineDispatch(), notify=messages.append).execute(items, stats, SETTINGS, "now")
    assert len(messages) == 1 and "quarantined" in messages[0] and "unreadable Parquet" in messages[0]
    assert stats.new == 7  # the quarantined shard's keys were generated again


def test_per_worker_options_share_the_cpu_not_the_gpu():
    options = EngineOptions(model_dir=Path("m"), gpu_memory_utilization=0.4)
    assert per_worker_options(options, 1, 2, on_gpu=False) == options
    assert per_worker_options(options, 4, 8, on_gpu=True) == options
    shared = per_worker_options(options, 2, 2, on_gpu=False)
    assert shared.threads == 1 and shared.gpu_memory_utilization == pytest.approx(0.2)
    unset = per_worker_options(EngineOptions(model_dir=Path("m")), 2, 2, on_gpu=False)
    assert unset.threads == 1 and unset.gpu_memory_utilization is None  # each engine sizes its own cache
    assert per_worker_options(options, 2, 9, on_gpu=False).threads == 4


def test_a_sharded_run_of_the_labelling_profiler_dispatches_labels_and_aggregates_here(db: Path, folder: RunFolder):
    from genre_local.llm.tasks import PROFILE_LABELED
    from genre_local.pipeline.sharded_run import ShardedGenerationRun

    dispatch = InlineDispatch()
    run = ShardedGenerationRun(db, SETTINGS, ShardedExecutor(db, folder, dispatch))
    [stats] = run.run([PROFILE_LABELED])
    # The workers saw the seven clicked news' labels only; the four profiles were made in the driver.
    labels = _rows(db, "SELECT fingerprint FROM generations WHERE task = 'label' AND valid")
    assert sorted(dispatch.seen) == sorted(f for (f,) in labels) and len(labels) == 7
    assert (stats.new, stats.valid) == (7 + 4, 7 + 4)
    assert _rows(db, "SELECT count(*) FROM generations WHERE task = 'profile' AND sampling ->> 'method' = 'label'") == [(4,)]


def test_a_sharded_label_score_run_sends_the_whole_prior_set_as_rows_and_profiles_here(db: Path, folder: RunFolder):
    """`--profile-method label-score` with --gpus N: its per-news rows travel as plain columns
    (what a worker process or Ray actor receives), every news of every user's window, whatever
    --limit; the profiles are aggregated in the driver."""
    from dataclasses import replace

    from genre_local.llm.tasks import PROFILE_LABEL_SCORED
    from genre_local.pipeline.distributed import item_to_row, row_to_item
    from genre_local.pipeline.sharded_run import ShardedGenerationRun

    class RowDispatch(InlineDispatch):
        def __call__(self, todo, job):
            return super().__call__([row_to_item(json.loads(json.dumps(item_to_row(i)))) for i in todo], job)

    dispatch = RowDispatch()
    limited = replace(SETTINGS, plan=replace(SETTINGS.plan, limit=1))
    [stats] = ShardedGenerationRun(db, limited, ShardedExecutor(db, folder, dispatch)).run([PROFILE_LABEL_SCORED])
    scored = _rows(db, "SELECT fingerprint FROM generations WHERE task = 'label_scores' AND valid")
    assert sorted(dispatch.seen) == sorted(f for (f,) in scored) and len(scored) == 7
    assert (stats.new, stats.valid) == (7 + 1, 7 + 1)
    assert _rows(db, "SELECT input_id FROM generations WHERE task = 'profile' AND sampling ->> 'method' = 'label-score'") \
        == [("U1",)]
