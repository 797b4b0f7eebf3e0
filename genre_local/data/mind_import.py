"""Import a MIND-format folder into the store: parse and check everything, then write once.

Parsing finishes before the store is touched, and the write is one transaction, so any bad
line leaves the store exactly as it was.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
from rich.progress import Progress

from genre_local.data.names import check_dataset_name
from genre_local.data.taxonomy import PROFILE_TOPICS, US_STATES
from genre_local.errors import UserError
from genre_local.store import Store
from genre_local.store.connection import now_utc

SPLITS = ("train", "dev", "test")
NEWS_COLUMNS = (
    "nid", "category", "subcategory", "title", "abstract", "url", "title_entities", "abstract_entities",
)
# MIND ships folders such as MINDsmall_train, MINDlarge_dev, MINDdemo_train.
_MIND_FOLDER = re.compile(r"^MIND[A-Za-z0-9]*_(train|dev|test)$")
_TIME = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2}) (AM|PM)$")
# Plain ASCII digits only: int() would also take '1_0', ' 7', '+3' and other scripts' digits.
_IMPRESSION_ID = re.compile(r"[0-9]+")
IMPRESSION_ID_MAX = 2**63 - 1  # the store's BIGINT
_BOM = "\ufeff"


@dataclass(frozen=True)
class ImportResult:
    news: int
    impressions: dict[str, int]
    truth_users: int
    seconds: float


def find_split_folders(src: Path) -> dict[str, Path]:
    """Map split name -> folder, accepting `train/` or MIND's own `MINDsmall_train/` names."""
    if not src.exists():
        raise UserError(f"{src} does not exist; pass a MIND folder holding train/ and dev/")
    if not src.is_dir():
        raise UserError(f"{src} is not a folder; pass a MIND folder holding train/ and dev/")
    found: dict[str, Path] = {}
    for child in sorted(src.iterdir()):
        if not child.is_dir():
            continue
        match = _MIND_FOLDER.match(child.name)
        split = child.name if child.name in SPLITS else (match.group(1) if match else None)
        if split is None:
            continue
        if split in found:
            raise UserError(
                f"{src} holds two {split} folders ({found[split].name}, {child.name}); keep one"
            )
        found[split] = child
    missing = [s for s in ("train", "dev") if s not in found]
    if missing:
        raise UserError(
            f"{src} has no {' or '.join(missing)} folder; expected train/ and dev/ "
            "(or MINDsmall_train/ and MINDsmall_dev/), optionally test/"
        )
    for split, folder in found.items():
        for name in ("news.tsv", "behaviors.tsv"):
            if not (folder / name).is_file():
                raise UserError(f"{folder / name} is missing; every split folder needs news.tsv and behaviors.tsv")
    return {s: found[s] for s in SPLITS if s in found}


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines of a UTF-8 file, without line terminators; a final newline is optional.

    Read line by line, never the whole file: MIND-large's train behaviors.tsv is over a GiB,
    and its text, its lines and the parsed columns together would be several times that."""
    offset = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(
                    f"{path} line {number}: bytes that are not UTF-8 at offset {offset + exc.start}; "
                    "re-encode the file as UTF-8"
                ) from None
            offset += len(raw)
            if number == 1:
                # MIND files may start with a UTF-8 byte order mark; left in, it would glue onto
                # the first news id and the error would surface later, blaming behaviors.tsv.
                line = line.removeprefix(_BOM)
            line = line.removesuffix("\n")
            yield number, line[:-1] if line.endswith("\r") else line


def parse_news(path: Path) -> list[tuple[str, ...]]:
    rows = []
    first_line: dict[str, int] = {}
    for number, line in _lines(path):
        fields = line.split("\t")
        if len(fields) != len(NEWS_COLUMNS):
            raise UserError(
                f"{path} line {number}: expected {len(NEWS_COLUMNS)} tab-separated columns "
                f"(nid, category, subcategory, title, abstract, url, title_entities, abstract_entities), "
                f"found {len(fields)}"
            )
        if not fields[0]:
            raise UserError(f"{path} line {number}: empty news id in column 1")
        if fields[0] in first_line:
            raise UserError(
                f"{path} line {number}: news id '{fields[0]}' is already on line {first_line[fields[0]]}; "
                "keep one row per news id"
            )
        first_line[fields[0]] = number
        rows.append(tuple(fields))
    return rows


def parse_time(value: str) -> datetime | None:
    match = _TIME.match(value)
    if not match:
        return None
    month, day, year, hour, minute, second, half = match.groups()
    if not 1 <= int(hour) <= 12:  # a 12-hour clock: '13:00:00 PM' or '0:30:00 AM' is a mistake
        return None
    hour_24 = int(hour) % 12 + (12 if half == "PM" else 0)
    try:
        return datetime(int(year), int(month), int(day), hour_24, int(minute), int(second))
    except ValueError:
        return None


BEHAVIORS_CHUNK_LINES = 200_000  # lines parsed in Python before DuckDB takes them (~100 MB of text)


def behaviors_chunks(path: Path, chunk_lines: int = BEHAVIORS_CHUNK_LINES) -> Iterator[pa.Table]:
    """Line-level checks of behaviors.tsv in Python, `chunk_lines` lines per table; the lists
    stay text for DuckDB to split.

    Splitting and checking millions of `nid-label` tokens one by one in Python dominated the
    import time, so that part runs vectorized in DuckDB (see `_stage_behaviors`). The file is
    read in chunks so memory stays bounded by a chunk, not by the file (MIND-large).
    """
    lines: list[int] = []
    ids: list[int] = []
    users: list[str] = []
    times: list[datetime] = []
    histories: list[str] = []
    impressions: list[str] = []
    seen_ids: set[int] = set()
    for number, line in _lines(path):
        fields = line.split("\t")
        where = f"{path} line {number}"
        if len(fields) != 5:
            raise UserError(
                f"{where}: expected 5 tab-separated columns (impression_id, user_id, time, history, "
                f"impressions), found {len(fields)}"
            )
        raw_id, user_id, raw_time, raw_history, raw_impressions = fields
        if not _IMPRESSION_ID.fullmatch(raw_id):
            raise UserError(f"{where}: impression id '{raw_id}' is not an integer (digits 0-9 only)")
        impression_id = int(raw_id)
        if impression_id > IMPRESSION_ID_MAX:
            raise UserError(f"{where}: impression id {raw_id} is too large (at most {IMPRESSION_ID_MAX})")
        if impression_id in seen_ids:
            raise UserError(f"{where}: impression id {impression_id} appears twice in this file")
        seen_ids.add(impression_id)
        if not user_id:
            raise UserError(f"{where}: empty user id in column 2")
        when = parse_time(raw_time)
        if when is None:
            raise UserError(f"{where}: time '{raw_time}' is not like '11/15/2019 8:55:22 AM' (a 12-hour clock)")
        lines.append(number)
        ids.append(impression_id)
        users.append(user_id)
        times.append(when)
        histories.append(raw_history)
        impressions.append(raw_impressions)
        if len(lines) >= chunk_lines:
            yield _behaviors_table(lines, ids, users, times, histories, impressions)
            lines, ids, users, times, histories, impressions = [], [], [], [], [], []
    if lines:
        yield _behaviors_table(lines, ids, users, times, histories, impressions)


def _behaviors_table(lines: list[int], ids: list[int], users: list[str], times: list[datetime],
                     histories: list[str], impressions: list[str]) -> pa.Table:
    return pa.table(
        {
            "line": pa.array(lines, type=pa.int64()),
            "impression_id": pa.array(ids, type=pa.int64()),
            "user_id": pa.array(users, type=pa.string()),
            "time": pa.array(times, type=pa.timestamp("us")),
            "history_text": pa.array(histories, type=pa.string()),
            "impressions_text": pa.array(impressions, type=pa.string()),
        }
    )


# A token is `nid-label` (label 0 or 1) or a bare nid (MIND-large's unlabeled test split).
_CANDIDATE_NID = "CASE WHEN contains(t, '-') THEN t[1:len(t) - 2] ELSE t END"
_CANDIDATE_LABEL = "CASE WHEN contains(t, '-') THEN CAST(right(t, 1) AS TINYINT) END"


def _stage_behaviors(store: Store, staged: str, chunks: Iterator[pa.Table]) -> int:
    """Split history and impressions into lists inside DuckDB (a temp table, not the store),
    one chunk of lines at a time; the number of impressions staged."""
    store.conn.execute(
        f"CREATE OR REPLACE TEMP TABLE {staged} (line BIGINT, impression_id BIGINT, user_id VARCHAR, "
        "time TIMESTAMP, history VARCHAR[], tokens VARCHAR[])"
    )
    rows = 0
    for number, raw in enumerate(chunks):
        with store.registered(f"{staged}_raw{number}", raw) as view:
            store.conn.execute(
                f"""
                INSERT INTO {staged}
                SELECT line, impression_id, user_id, time,
                       list_filter(string_split(history_text, ' '), lambda x: x <> '') AS history,
                       list_filter(string_split(impressions_text, ' '), lambda x: x <> '') AS tokens
                FROM {view}
                """
            )
        rows += raw.num_rows
    return rows


def _first_behaviors_problem(store: Store, staged: str, known: str) -> tuple[int, str] | None:
    """The earliest (line, problem) of a staged behaviors file, or None when it is clean."""
    problems: list[tuple[int, int, str]] = []
    empty = store.conn.execute(f"SELECT min(line) FROM {staged} WHERE len(tokens) = 0").fetchone()[0]
    if empty is not None:
        problems.append((empty, 0, "no impressions in column 5"))
    unknown_history = store.conn.execute(
        f"""
        WITH h AS (SELECT line, unnest(history) AS nid, generate_subscripts(history, 1) AS pos FROM {staged})
        SELECT line, pos, h.nid FROM h ANTI JOIN {known} k ON h.nid = k.nid ORDER BY line, pos LIMIT 1
        """
    ).fetchone()
    if unknown_history is not None:
        line, pos, nid = unknown_history
        problems.append((line, pos, f"history names news '{nid}' that no news.tsv holds"))
    bad_token = store.conn.execute(
        f"""
        WITH tok AS (SELECT line, unnest(tokens) AS t, generate_subscripts(tokens, 1) AS pos FROM {staged}),
        parsed AS (
            SELECT line, pos, t, contains(t, '-') AND right(t, 2) NOT IN ('-0', '-1') AS bad_label,
                   {_CANDIDATE_NID} AS nid
            FROM tok
        )
        SELECT line, pos, t, bad_label, p.nid, k.nid IS NULL AS unknown
        FROM parsed p LEFT JOIN {known} k ON p.nid = k.nid
        WHERE bad_label OR p.nid = '' OR k.nid IS NULL
        ORDER BY line, pos LIMIT 1
        """
    ).fetchone()
    if bad_token is not None:
        line, pos, token, bad_label, nid, _ = bad_token
        if bad_label:
            label = token.rpartition("-")[2]
            message = f"impression '{token}' has label '{label}', expected 0 or 1"
        elif not nid:
            message = f"impression '{token}' has no news id"
        else:
            message = f"impression names news '{nid}' that no news.tsv holds"
        problems.append((line, pos, message))
    if not problems:
        return None
    line, _, message = min(problems)
    return line, message


def parse_truth(path: Path) -> list[tuple[str, list[str], str]]:
    """truth.tsv of the synthetic generator: user_id, topics joined by '|', home state."""
    topics_known = set(PROFILE_TOPICS)
    states_known = set(US_STATES)
    rows = []
    for number, line in _lines(path):
        fields = line.split("\t")
        where = f"{path} line {number}"
        if number == 1 and fields == ["user_id", "topics", "region"]:
            continue
        if len(fields) != 3:
            raise UserError(f"{where}: expected 3 tab-separated columns (user_id, topics, region), found {len(fields)}")
        user_id, raw_topics, region = fields
        topics = [t for t in raw_topics.split("|") if t]
        bad = [t for t in topics if t not in topics_known]
        if bad:
            raise UserError(f"{where}: '{bad[0]}' is not one of GENRE's 19 profile topics")
        if region and region not in states_known:
            raise UserError(f"{where}: region '{region}' is not a US state")
        rows.append((user_id, topics, region))
    return rows


def _news_table(dataset: str, news: dict[str, tuple[str, ...]]) -> pa.Table:
    columns = list(zip(*news.values())) if news else [[] for _ in NEWS_COLUMNS]
    arrays = {name: pa.array(col, type=pa.string()) for name, col in zip(NEWS_COLUMNS, columns)}
    return pa.table({"dataset": pa.array([dataset] * len(news), type=pa.string()), **arrays})


def _truth_table(dataset: str, rows: list[tuple[str, list[str], str]]) -> pa.Table:
    return pa.table(
        {
            "dataset": pa.array([dataset] * len(rows), type=pa.string()),
            "user_id": pa.array([r[0] for r in rows], type=pa.string()),
            "topics": pa.array([r[1] for r in rows], type=pa.list_(pa.string())),
            "region": pa.array([r[2] for r in rows], type=pa.string()),
        }
    )


def _tables_with_dataset_column(store: Store) -> list[str]:
    rows = store.conn.execute(
        "SELECT c.table_name FROM information_schema.columns c "
        "JOIN information_schema.tables t ON t.table_name = c.table_name AND t.table_schema = c.table_schema "
        "WHERE c.column_name = 'dataset' AND t.table_type = 'BASE TABLE' AND c.table_schema = 'main' "
        "ORDER BY c.table_name"
    ).fetchall()
    return [r[0] for r in rows]


# Tables keyed by a training run's id without a dataset column of their own: their rows go with
# the dataset's runs (tests/test_import.py checks the store has no other such table).
RUN_CHILD_TABLES = ("run_metrics", "run_epochs", "run_checkpoints", "run_sources")


def drop_dataset(store: Store, name: str) -> None:
    """Delete every row of `name` in every table with a dataset column (imports, generations, runs),
    and the rows of its runs in the tables keyed by run id (metrics, epochs, checkpoints)."""
    for table in RUN_CHILD_TABLES:
        store.conn.execute(f'DELETE FROM "{table}" WHERE run_id IN (SELECT run_id FROM runs WHERE dataset = ?)', [name])
    for table in _tables_with_dataset_column(store):
        store.conn.execute(f'DELETE FROM "{table}" WHERE dataset = ?', [name])
    store.conn.execute("DELETE FROM datasets WHERE name = ?", [name])


def import_mind(
    store: Store, src: Path, name: str, replace: bool = False, progress: Progress | None = None,
    chunk_lines: int = BEHAVIORS_CHUNK_LINES,
) -> ImportResult:
    """Parse every file of the MIND folder, then write the dataset in one transaction.

    behaviors.tsv is parsed `chunk_lines` lines at a time into DuckDB temp tables; the stored
    dataset does not depend on the chunk size (tests/test_import.py)."""
    started = time.perf_counter()
    check_dataset_name(name)
    src = Path(src)
    folders = find_split_folders(src)
    exists = store.conn.execute("SELECT count(*) FROM datasets WHERE name = ?", [name]).fetchone()[0]
    if exists and not replace:
        raise UserError(
            f"dataset '{name}' is already in {store.path}; pass --replace to re-import it "
            "(its generations and runs are dropped too) or choose another --name"
        )
    steps = 2 * len(folders) + 2
    task = progress.add_task(f"import {name}", total=steps) if progress else None

    def advance() -> None:
        if progress is not None and task is not None:
            progress.advance(task)

    # Same nid in several splits' news.tsv is normal in MIND: the first split's row wins.
    news: dict[str, tuple[str, ...]] = {}
    for folder in folders.values():
        for row in parse_news(folder / "news.tsv"):
            news.setdefault(row[0], row)
        advance()
    if not news:
        raise UserError(f"{src}: every news.tsv is empty; a dataset needs news and impressions")
    truth_path = src / "truth.tsv"
    truth = parse_truth(truth_path) if truth_path.is_file() else []

    known = "_import_known_nids"
    staged = {split: f"_import_staged_{split}" for split in folders}
    try:
        with store.registered(f"{known}_raw", pa.table({"nid": pa.array(list(news), type=pa.string())})) as view:
            store.conn.execute(f"CREATE OR REPLACE TEMP TABLE {known} AS SELECT nid FROM {view}")
        impression_counts = {}
        for split, folder in folders.items():
            path = folder / "behaviors.tsv"
            impression_counts[split] = _stage_behaviors(store, staged[split], behaviors_chunks(path, chunk_lines))
            problem = _first_behaviors_problem(store, staged[split], known)
            if problem is not None:
                raise UserError(f"{path} line {problem[0]}: {problem[1]}")
            advance()
        if not sum(impression_counts.values()):
            raise UserError(f"{src}: every behaviors.tsv is empty; a dataset needs news and impressions")
        if not impression_counts["train"]:  # nothing to train on: refused now, not at the first `train`
            raise UserError(f"{folders['train'] / 'behaviors.tsv'} holds no impression; a dataset needs training "
                            "impressions (check that the file is the right one)")
        advance()

        with store.transaction():
            if exists:
                drop_dataset(store, name)
            store.conn.execute(
                "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?)",
                [name, str(src.resolve()), now_utc(), list(folders), len(news), sum(impression_counts.values()), bool(truth)],
            )
            store.insert_arrow("news", _news_table(name, news))
            for split in folders:
                store.conn.execute(
                    f"""
                    INSERT INTO impressions
                    SELECT ?, ?, impression_id, user_id, time, history,
                           list_transform(tokens, lambda t: {_CANDIDATE_NID}),
                           list_transform(tokens, lambda t: {_CANDIDATE_LABEL})
                    FROM {staged[split]} ORDER BY line
                    """,
                    [name, split],
                )
            store.insert_arrow("user_truth", _truth_table(name, truth))
    finally:
        for table in [known, *staged.values()]:
            store.conn.execute(f"DROP TABLE IF EXISTS {table}")
    advance()
    return ImportResult(
        news=len(news),
        impressions=impression_counts,
        truth_users=len(truth),
        seconds=time.perf_counter() - started,
    )
