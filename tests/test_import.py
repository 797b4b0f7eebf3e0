"""MIND import: every quirk of the format and every bad-input case, through the library and the CLI."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.data.mind_import import import_mind, parse_time
from genre_local.errors import UserError
from genre_local.store import open_store
from tests.support_mind import NEWS_ROWS, write_mind, write_tsv

runner = CliRunner()


def snapshot(db: Path) -> dict[str, list]:
    with open_store(db) as store:
        return {
            table: store.conn.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            for table in ("datasets", "news", "impressions", "user_truth")
        }


def run_cli(db: Path, *args: str):
    return runner.invoke(app, ["--db", str(db), *args])


def test_roundtrip_is_byte_exact(tmp_path: Path) -> None:
    src = write_mind(tmp_path / "mind", with_test=True)
    db = tmp_path / "g.duckdb"
    with open_store(db) as store:
        result = import_mind(store, src, "tiny")
        assert result.news == 5
        assert result.impressions == {"train": 3, "dev": 2, "test": 1}
        news = store.conn.execute(
            "SELECT nid, category, subcategory, title, abstract, url, title_entities, abstract_entities "
            "FROM news WHERE dataset='tiny' ORDER BY nid"
        ).fetchall()
        assert news == sorted(NEWS_ROWS)
        rows = store.conn.execute(
            "SELECT split, impression_id, user_id, time, history, candidates, labels FROM impressions "
            "ORDER BY split, impression_id"
        ).fetchall()
    by_key = {(r[0], r[1]): r[2:] for r in rows}
    assert by_key[("train", 1)] == ("U1", datetime(2019, 11, 15, 8, 55, 22), ["N1", "N2"], ["N3", "N4", "N5"], [1, 0, 0])
    assert by_key[("train", 2)][2] == []  # empty history
    assert by_key[("train", 2)][1] == datetime(2019, 11, 15, 12, 1, 0)  # 12 PM is noon
    assert by_key[("dev", 2)][1] == datetime(2019, 11, 17, 22, 30, 0)
    # MIND-large's test split: bare nids, labels NULL
    assert by_key[("test", 1)][3:] == (["N3", "N4", "N5"], [None, None, None])


def test_mind_folder_names_and_crlf(tmp_path: Path) -> None:
    src = write_mind(tmp_path / "mind", {"train": "MINDsmall_train", "dev": "MINDsmall_dev", "test": "t"})
    news = (src / "MINDsmall_dev" / "news.tsv").read_bytes().replace(b"\n", b"\r\n")
    (src / "MINDsmall_dev" / "news.tsv").write_bytes(news)
    db = tmp_path / "g.duckdb"
    with open_store(db) as store:
        result = import_mind(store, src, "small")
        titles = dict(store.conn.execute("SELECT nid, title_entities FROM news").fetchall())
    assert result.impressions == {"train": 3, "dev": 2}
    assert titles["N2"] == '[{"Label": "Fed"}]'  # no stray carriage return


def test_same_nid_in_several_splits_is_merged(tmp_path: Path) -> None:
    dev_news = [NEWS_ROWS[0], NEWS_ROWS[2], NEWS_ROWS[3], NEWS_ROWS[4], NEWS_ROWS[1]]
    src = write_mind(tmp_path / "m", news_by_split={"train": NEWS_ROWS[:3] + NEWS_ROWS[4:], "dev": dev_news})
    with open_store(tmp_path / "g.duckdb") as store:
        assert import_mind(store, src, "d").news == 5
        assert store.conn.execute("SELECT count(DISTINCT nid), count(*) FROM news").fetchone() == (5, 5)


def test_reimport_needs_replace_and_replace_swaps_data(tmp_path: Path) -> None:
    src = write_mind(tmp_path / "m")
    db = tmp_path / "g.duckdb"
    assert run_cli(db, "data", "import", str(src), "--name", "d").exit_code == 0
    again = run_cli(db, "data", "import", str(src), "--name", "d")
    assert again.exit_code == 2
    assert "--replace" in again.stderr
    assert run_cli(db, "data", "import", str(src), "--name", "d", "--replace").exit_code == 0
    with open_store(db) as store:
        assert store.conn.execute("SELECT count(*) FROM impressions").fetchone()[0] == 5
        assert store.conn.execute("SELECT count(*) FROM datasets").fetchone()[0] == 1


BAD_CASES = [
    # (split, file, bytes to write, expected line, expected phrase)
    ("train", "news.tsv", b"N1\tsports\tnfl\ttitle\tabs\turl\t[]\n", 1, "expected 8 tab-separated columns"),
    ("dev", "behaviors.tsv", b"1\tU1\t11/17/2019 9:00:00 AM\tN1\tN3-1\n2\tU2\t11/17/2019 9:00:00 AM\tN1\n", 2, "expected 5"),
    ("train", "behaviors.tsv", b"1\tU1\t11/15/2019 8:55:22 AM\tN1\tN3-1 N4-2\n", 1, "label '2'"),
    ("train", "behaviors.tsv", b"1\tU1\t11/15/2019 8:55:22 AM\tN1\tN3-x\n", 1, "label 'x'"),
    ("train", "behaviors.tsv", b"1\tU1\t11/15/2019 8:55:22 AM\tN1 N99\tN3-1\n", 1, "history names news 'N99'"),
    ("dev", "behaviors.tsv", b"1\tU1\t11/15/2019 8:55:22 AM\tN1\tN3-1\n2\tU1\t11/15/2019 8:55:22 AM\t\tN77-0\n", 2, "impression names news 'N77'"),
    ("train", "behaviors.tsv", b"1\tU1\t2019-11-15 08:55\tN1\tN3-1\n", 1, "time '2019-11-15 08:55'"),
    ("train", "behaviors.tsv", b"x\tU1\t11/15/2019 8:55:22 AM\tN1\tN3-1\n", 1, "not an integer"),
    ("train", "behaviors.tsv", b"1\tU1\t11/15/2019 8:55:22 AM\tN1\tN3-1\n1\tU2\t11/15/2019 8:55:22 AM\tN1\tN3-1\n", 2, "appears twice"),
    ("train", "behaviors.tsv", b"1\tU1\t11/15/2019 8:55:22 AM\tN1\t\n", 1, "no impressions"),
    ("dev", "news.tsv", "N1\tsports\tnfl\tok\t\t\t[]\t[]\nN2\tsports\tnfl\tbad \xff\t\t\t[]\t[]\n".encode("latin-1"), 2, "not UTF-8"),
]


# Issue 12: leniencies that used to slip through (each rejected with file:line, nothing written).
LENIENCY_CASES = [
    ("train", "behaviors.tsv", b"1_0\tU1\t11/15/2019 8:55:22 AM\tN1\tN3-1\n", 1, "impression id '1_0' is not an integer"),
    ("train", "behaviors.tsv", b" 7\tU1\t11/15/2019 8:55:22 AM\tN1\tN3-1\n", 1, "impression id ' 7' is not an integer"),
    ("train", "behaviors.tsv", b"-1\tU1\t11/15/2019 8:55:22 AM\tN1\tN3-1\n", 1, "impression id '-1' is not an integer"),
    ("dev", "behaviors.tsv", b"1\tU1\t11/15/2019 8:55:22 AM\tN1\tN3-1\n99999999999999999999\tU1\t11/15/2019 8:55:22 AM\tN1\tN3-1\n",
     2, "impression id 99999999999999999999 is too large"),
    ("train", "behaviors.tsv", b"1\tU1\t11/15/2019 13:55:22 PM\tN1\tN3-1\n", 1, "time '11/15/2019 13:55:22 PM'"),
    ("train", "behaviors.tsv", b"1\tU1\t11/15/2019 0:55:22 AM\tN1\tN3-1\n", 1, "time '11/15/2019 0:55:22 AM'"),
    ("dev", "news.tsv", b"N1\ts\tn\tt\t\t\t[]\t[]\nN2\ts\tn\tt\t\t\t[]\t[]\nN1\ts\tn\tother\t\t\t[]\t[]\n",
     3, "news id 'N1' is already on line 1"),
]


@pytest.mark.parametrize(("split", "name", "content", "line", "phrase"), BAD_CASES + LENIENCY_CASES)
def test_bad_input_names_file_and_line_and_writes_nothing(
    tmp_path: Path, split: str, name: str, content: bytes, line: int, phrase: str
) -> None:
    db = tmp_path / "g.duckdb"
    good = write_mind(tmp_path / "good")
    assert run_cli(db, "data", "import", str(good), "--name", "first").exit_code == 0
    before = snapshot(db)
    src = write_mind(tmp_path / "bad")
    (src / split / name).write_bytes(content)
    result = run_cli(db, "data", "import", str(src), "--name", "second")
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert f"{split}/{name} line {line}:" in message
    assert phrase in message
    assert "Traceback" not in result.output
    assert snapshot(db) == before


def test_missing_files_and_folders(tmp_path: Path) -> None:
    db = tmp_path / "g.duckdb"
    result = run_cli(db, "data", "import", str(tmp_path / "nope"), "--name", "x")
    assert result.exit_code == 2 and "does not exist" in result.stderr
    src = write_mind(tmp_path / "m")
    (src / "dev" / "behaviors.tsv").unlink()
    result = run_cli(db, "data", "import", str(src), "--name", "x")
    assert result.exit_code == 2 and "dev/behaviors.tsv is missing" in result.stderr
    only_train = tmp_path / "t"
    write_tsv(only_train / "train" / "news.tsv", NEWS_ROWS)
    result = run_cli(db, "data", "import", str(only_train), "--name", "x")
    assert result.exit_code == 2 and "no dev folder" in result.stderr


def test_failure_during_write_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "g.duckdb"
    src = write_mind(tmp_path / "m")
    with open_store(db) as store:
        import_mind(store, src, "keep")
    before = snapshot(db)
    from genre_local.store.connection import Store

    original = Store.insert_arrow

    def fail_on_last_table(self, table, rows):  # type: ignore[no-untyped-def]
        if table == "user_truth":  # written after news and impressions
            raise RuntimeError("disk full")
        return original(self, table, rows)

    monkeypatch.setattr(Store, "insert_arrow", fail_on_last_table)
    with open_store(db) as store, pytest.raises(RuntimeError):
        import_mind(store, src, "keep", replace=True)
    monkeypatch.undo()
    assert snapshot(db) == before


def test_truth_file_is_loaded_and_checked(tmp_path: Path) -> None:
    src = write_mind(tmp_path / "m")
    (src / "truth.tsv").write_text("user_id\ttopics\tregion\nU1\thealth|finance\tFlorida\nU2\ttravel\tTexas\n")
    db = tmp_path / "g.duckdb"
    with open_store(db) as store:
        assert import_mind(store, src, "d").truth_users == 2
        assert store.conn.execute("SELECT topics, region FROM user_truth WHERE user_id='U1'").fetchone() == (
            ["health", "finance"], "Florida",
        )
    (src / "truth.tsv").write_text("user_id\ttopics\tregion\nU1\tknitting\tFlorida\n")
    result = run_cli(db, "data", "import", str(src), "--name", "e")
    assert result.exit_code == 2 and "truth.tsv line 2" in result.stderr and "knitting" in result.stderr


def test_parse_time_rejects_impossible_dates() -> None:
    assert parse_time("2/30/2019 1:00:00 AM") is None
    assert parse_time("11/15/2019 12:00:00 AM") == datetime(2019, 11, 15, 0, 0, 0)


def test_bad_dataset_name(tmp_path: Path) -> None:
    src = write_mind(tmp_path / "m")
    with open_store(tmp_path / "g.duckdb") as store, pytest.raises(UserError, match="dataset name"):
        import_mind(store, src, "bad name")


def test_stats_json(tmp_path: Path) -> None:
    db = tmp_path / "g.duckdb"
    src = write_mind(tmp_path / "m", with_test=True)
    assert run_cli(db, "data", "import", str(src), "--name", "d").exit_code == 0
    result = run_cli(db, "data", "stats", "--name", "d", "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    assert stats["news"] == 5
    assert stats["users"] == 3
    assert stats["impressions"] == {"train": 3, "dev": 2, "test": 1}
    assert stats["clicks"] == {"train": 4, "dev": 2, "test": 0}
    # U1: 2 items, U3: 1 item -> cold; U2: history "" in train, "N1" in test -> longest is 1 -> cold
    assert stats["cold_users"] == 3
    assert stats["empty_history_users"] == 0
    # Regression: percentiles were interpolated (p90 1.8 clicks); they are history lengths users have.
    assert stats["history_percentiles"] == {"p50": 1, "p90": 2, "p99": 2}
    assert stats["categories"]["sports"] == 1
    missing = run_cli(db, "data", "stats", "--name", "nope")
    assert missing.exit_code == 2 and "dataset 'nope' is not in store" in missing.stderr


# ---------------------------------------------------------------- issue 12: names, BOM, empty datasets


def test_utf8_bom_is_stripped_from_every_file(tmp_path: Path) -> None:
    src = write_mind(tmp_path / "m")
    for path in [src / "train" / "news.tsv", src / "dev" / "behaviors.tsv"]:
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    (src / "truth.tsv").write_bytes(b"\xef\xbb\xbfuser_id\ttopics\tregion\nU1\thealth\tOhio\n")
    db = tmp_path / "g.duckdb"
    result = run_cli(db, "data", "import", str(src), "--name", "d")
    assert result.exit_code == 0, result.output
    with open_store(db) as store:
        nids = [r[0] for r in store.conn.execute("SELECT nid FROM news ORDER BY nid").fetchall()]
        assert nids == ["N1", "N2", "N3", "N4", "N5"]
        assert store.conn.execute("SELECT count(*) FROM impressions WHERE split = 'dev'").fetchone()[0] == 2
        assert store.conn.execute("SELECT user_id FROM user_truth").fetchall() == [("U1",)]


def test_bom_elsewhere_than_the_start_is_kept_byte_exact(tmp_path: Path) -> None:
    rows = [("N1", "s", "n", "\ufefftitle", "", "", "[]", "[]"), *NEWS_ROWS[1:]]
    src = write_mind(tmp_path / "m", news_by_split={"train": rows, "dev": rows})
    with open_store(tmp_path / "g.duckdb") as store:
        import_mind(store, src, "d")
        assert store.conn.execute("SELECT title FROM news WHERE nid = 'N1'").fetchone() == ("\ufefftitle",)


@pytest.mark.parametrize(
    ("news", "behaviors", "phrase"),
    [
        ([], [], "every news.tsv is empty"),
        (NEWS_ROWS, [], "every behaviors.tsv is empty"),
    ],
)
def test_empty_dataset_is_refused(tmp_path: Path, news: list, behaviors: list, phrase: str) -> None:
    src = tmp_path / "m"
    for split in ("train", "dev"):
        write_tsv(src / split / "news.tsv", news)
        write_tsv(src / split / "behaviors.tsv", behaviors)
    db = tmp_path / "g.duckdb"
    assert run_cli(db, "data", "import", str(write_mind(tmp_path / "good")), "--name", "first").exit_code == 0
    before = snapshot(db)
    result = run_cli(db, "data", "import", str(src), "--name", "empty")
    assert result.exit_code == 2, result.output
    assert phrase in result.stderr and str(src) in result.stderr and result.stderr.strip().count("\n") == 0
    assert snapshot(db) == before


def test_an_empty_train_behaviors_file_is_refused(tmp_path: Path) -> None:
    # Imported, it stored a dataset `train` could only refuse later ("has no train split").
    src = write_mind(tmp_path / "m")
    write_tsv(src / "train" / "behaviors.tsv", [])
    db = tmp_path / "g.duckdb"
    result = run_cli(db, "data", "import", str(src), "--name", "d")
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {src / 'train' / 'behaviors.tsv'} holds no impression; a dataset needs training " \
                            "impressions (check that the file is the right one)\n"
    with open_store(db) as store:
        assert store.dataset_names() == []


@pytest.mark.parametrize("name", [".", "..", "../x", "a/b", ".hidden", "-rf", "", "a b", "x" * 65, "caf\u00e9", "a\\b"])
def test_unsafe_dataset_names_are_refused_before_writing(tmp_path: Path, name: str) -> None:
    from genre_local.data.names import check_dataset_name, is_dataset_name

    assert not is_dataset_name(name)
    with pytest.raises(UserError, match="a dataset name must be 1-64 letters"):
        check_dataset_name(name)
    db = tmp_path / "g.duckdb"
    src = write_mind(tmp_path / "m")
    result = run_cli(db, "data", "import", str(src), f"--name={name}")
    assert result.exit_code == 2, result.output
    assert "a dataset name must be" in result.stderr and result.stderr.strip().count("\n") == 0
    if db.exists():
        with open_store(db) as store:
            assert store.dataset_names() == []


@pytest.mark.parametrize("name", ["d", "MINDsmall", "mind.small-v2_1", "x" * 64, "0"])
def test_safe_dataset_names_are_accepted(name: str) -> None:
    from genre_local.data.names import check_dataset_name

    assert check_dataset_name(name) == name


def test_parse_time_needs_a_12_hour_clock() -> None:
    assert parse_time("11/15/2019 12:30:00 PM") == datetime(2019, 11, 15, 12, 30, 0)
    assert parse_time("11/15/2019 1:00:00 PM") == datetime(2019, 11, 15, 13, 0, 0)
    for bad in ("11/15/2019 13:00:00 PM", "11/15/2019 0:10:00 AM", "11/15/2019 23:00:00 AM", "11/15/2019 1:60:00 PM"):
        assert parse_time(bad) is None


def test_replace_deletes_the_old_runs_rows_in_every_run_table(tmp_path: Path) -> None:
    from genre_local.data.mind_import import RUN_CHILD_TABLES
    from tests.support_report import add_run, all_metrics, insert

    db = tmp_path / "g.duckdb"
    src = write_mind(tmp_path / "m")
    with open_store(db) as store:
        import_mind(store, src, "d")
        import_mind(store, src, "keep")
        dropped = add_run(store, "d", "nrms", "ns", 1, all_metrics(0.6), stop_auc=(0.5, 0.6), source=("m", "compact"))
        kept = add_run(store, "keep", "nrms", "ns", 1, all_metrics(0.6), stop_auc=(0.5,), source=("m", "compact"))
        for run_id in (dropped, kept):
            insert(store, "run_checkpoints", {"run_id": run_id, "checkpoint": f"/ck/{run_id}"})
        # Every table keyed by a run id without a dataset column of its own is cleaned up.
        keyed = {r[0] for r in store.conn.execute(
            "SELECT table_name FROM information_schema.columns WHERE column_name = 'run_id' AND table_schema = 'main' "
            "AND table_name IN (SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE') "
            "EXCEPT SELECT table_name FROM information_schema.columns WHERE column_name = 'dataset'"
        ).fetchall()}
        assert keyed == set(RUN_CHILD_TABLES)
        import_mind(store, src, "d", replace=True)
        for table in ("runs", *RUN_CHILD_TABLES):
            left = {r[0] for r in store.conn.execute(f"SELECT DISTINCT run_id FROM {table}").fetchall()}
            assert left == {kept}, table


def test_the_cold_user_alias_is_gone() -> None:
    from genre_local.data import taxonomy

    assert not hasattr(taxonomy, "COLD_USER_MAX_HISTORY")  # the one name: recsys.catalog.NEW_USER_MAX_HISTORY


# -- MIND-large-sized files: behaviors.tsv is parsed and staged in chunks of lines (issue 10) ----


def _rows(db: Path, name: str) -> dict[str, list]:
    """Every stored row of dataset `name`, its import time left out."""
    with open_store(db) as store:
        return {
            "datasets": store.conn.execute("SELECT * EXCLUDE (name, created_at) FROM datasets WHERE name = ?", [name]).fetchall(),
            **{table: store.conn.execute(f"SELECT * EXCLUDE (dataset) FROM {table} WHERE dataset = ? ORDER BY ALL", [name]).fetchall()
               for table in ("news", "impressions", "user_truth")},
        }


def test_chunked_import_equals_the_one_shot_import(tmp_path: Path) -> None:
    from genre_local.data.synth import SynthSpec, write_synthetic_mind

    src = tmp_path / "synth"
    write_synthetic_mind(src, SynthSpec(news=300, users=120, seed=3))
    db = tmp_path / "g.duckdb"
    with open_store(db) as store:
        whole = import_mind(store, src, "whole", chunk_lines=10**9)
        chunked = import_mind(store, src, "chunked", chunk_lines=7)
    assert whole.impressions == chunked.impressions and whole.impressions["train"] > 7 * 3
    one, many = _rows(db, "whole"), _rows(db, "chunked")
    assert one["impressions"] and one == many


def test_a_duplicate_id_in_a_later_chunk_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    src = write_mind(tmp_path / "mind")
    line = "{}\tU1\t11/15/2019 8:55:22 AM\tN1\tN3-1\n"
    (src / "train" / "behaviors.tsv").write_text("".join(line.format(i) for i in (1, 2, 3, 4, 2)))
    db = tmp_path / "g.duckdb"
    with open_store(db) as store, pytest.raises(UserError, match=r"behaviors.tsv line 5: impression id 2 appears twice"):
        import_mind(store, src, "tiny", chunk_lines=2)
    with open_store(db) as store:
        assert store.conn.execute("SELECT count(*) FROM impressions").fetchone()[0] == 0
        assert store.conn.execute("SELECT count(*) FROM datasets").fetchone()[0] == 0


def test_bytes_that_are_not_utf8_are_located_by_line_and_file_offset(tmp_path: Path) -> None:
    src = write_mind(tmp_path / "mind")
    good = "1\tU1\t11/15/2019 8:55:22 AM\tN1\tN3-1\n".encode()
    (src / "train" / "behaviors.tsv").write_bytes(good + good.replace(b"U1", b"U\xff"))
    with open_store(tmp_path / "g.duckdb") as store, pytest.raises(UserError) as caught:
        import_mind(store, src, "tiny")
    assert f"line 2: bytes that are not UTF-8 at offset {len(good) + 3}" in str(caught.value)
