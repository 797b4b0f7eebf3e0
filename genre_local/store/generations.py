"""Typed reads and writes of the LLM stage's tables (002_generation.sql): `generations`,
`generation_runs`, `profile_fidelity`, and the views the training stage reads
(`enhanced_titles`, `user_profiles`, `synthetic_news`).

Every insert names its columns (`INSERT ... BY NAME`): a record's field names are the table's
column names, so a reordered or added column can never shift values into the wrong place.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa

from genre_local.errors import UserError
from genre_local.store.connection import Store

LOCAL_PROMPT_SET = "compact"
"""The prompt set every local generation uses today (prompts/*.txt); migration 006's default."""
IMPORTED_PROMPT_SET = "imported"
"""The prompt set of imported outputs unless the user names one (`generations import --prompt-set`)."""
GENERATED, IMPORTED = "generated", "imported"
"""`generations.provenance`: written by the local pipeline, or read from a file."""


PROFILE_METHODS = ("generate", "score", "label", "label-score")
"""How a profile is made (llm/tasks.py): the LLM writes it, scores every label, labels the
clicked news and counts the labels, or labels and scores them (topics by calibrated scores).
Part of a generation source (migrations 010, 012)."""
DEFAULT_METHOD = "generate"
PROFILE_DERIVED_TASKS = ("profile", "chain")
"""The tasks whose outputs are made from profiles of one method; every other task's outputs
belong to the method 'generate' of their (LLM, prompt set)."""


@dataclass(frozen=True, order=True)
class GenerationSource:
    """Who wrote a set of generations: the LLM (`generations.model`), the prompt set, and (for
    profiles and the chain's news made from them) the profile method.

    Part of every non-original variant and of the runs trained on it: outputs of two sources
    never mix in one dataset variant. The method is 'generate' for every variant that reads no
    profile (ns, ng): the summarizer and the one-pass generator do not depend on it.
    """

    llm: str
    prompt_set: str
    method: str = DEFAULT_METHOD

    @property
    def base_label(self) -> str:
        return f"{self.llm}/{self.prompt_set}"

    @property
    def label(self) -> str:
        """LLM/SET, with '+METHOD' when the profiles are not generated (LLM/SET+score)."""
        return self.base_label if self.method == DEFAULT_METHOD else f"{self.base_label}+{self.method}"

    def matches(self, wanted: str) -> bool:
        """`--llm` names a source by its label, its model id, or the model's folder name (before
        '@'), each optionally followed by '+METHOD'; without a method it names every method."""
        name, method = split_method(wanted)
        if method is not None and method != self.method:
            return False
        return name in (self.base_label, self.llm, self.llm.split("@", 1)[0])


def split_method(wanted: str) -> tuple[str, str | None]:
    """'NAME+score' -> ('NAME', 'score'); a name without a known method suffix -> (name, None)."""
    name, plus, method = wanted.rpartition("+")
    return (name, method) if plus and name and method in PROFILE_METHODS else (wanted, None)


def complete_sources(rows: Iterable[tuple[str, str, str, str]], tasks: Sequence[str]) -> list[GenerationSource]:
    """The sources among stored (LLM, prompt set, task, method) rows with outputs for every one
    of `tasks` (sorted): profile and chain outputs must be of the source's method, the other
    tasks' outputs of its LLM and prompt set. Without a profile-derived task the method is 'generate'."""
    derived = {t for t in tasks if t in PROFILE_DERIVED_TASKS}
    plain = set(tasks) - derived
    plain_done: dict[tuple[str, str], set[str]] = {}
    derived_done: dict[tuple[str, str, str], set[str]] = {}
    for llm, prompt_set, task, method in rows:
        if task in PROFILE_DERIVED_TASKS:
            derived_done.setdefault((llm, prompt_set, method), set()).add(task)
        else:
            plain_done.setdefault((llm, prompt_set), set()).add(task)
    if not derived:
        candidates = [(llm, prompt_set, DEFAULT_METHOD) for llm, prompt_set in plain_done]
    else:
        candidates = [key for key, done in derived_done.items() if derived <= done]
    return sorted(GenerationSource(*key) for key in candidates
                  if not plain or plain <= plain_done.get((key[0], key[1]), set()))


def sources_with_tasks(conn: duckdb.DuckDBPyConnection, dataset: str, tasks: Sequence[str]) -> list[GenerationSource]:
    """The sources that stored a valid output for every one of `tasks` (sorted; see complete_sources)."""
    if not tasks:
        return []
    rows = conn.execute(
        "SELECT DISTINCT model, prompt_set, task, source_method(task, sampling) FROM generations "
        "WHERE dataset = ? AND valid AND list_contains(?, task)",
        [dataset, list(tasks)],
    ).fetchall()
    return complete_sources(rows, tasks)


def choose_source(available: Sequence[GenerationSource], wanted: str | None, what: str) -> GenerationSource:
    """The one source `--llm wanted` names among `available` (the only one when `wanted` is None;
    a full label, e.g. LLM/SET for the generated profiles beside LLM/SET+score, names one).

    `what` says what the sources are for ("variant 'ns' of dataset 'd'"); `available` is not empty.
    """
    labels = ", ".join(s.label for s in available)
    if wanted is None:
        if len(available) == 1:
            return available[0]
        raise UserError(f"{what} has {len(available)} generation sources ({labels}); pick one with --llm NAME")
    exact = [s for s in available if s.label == wanted]
    matching = exact or [s for s in available if s.matches(wanted)]
    if len(matching) == 1:
        return matching[0]
    if not matching:
        raise UserError(f"--llm {wanted!r} names no generation source of {what}; stored sources: {labels}")
    raise UserError(f"--llm {wanted!r} names {len(matching)} sources of {what} "
                    f"({', '.join(s.label for s in matching)}); pass the full LLM/prompt-set[+method] label")


@dataclass(frozen=True)
class GenerationRecord:
    """One `generations` row: one request's latest attempt, keyed by its fingerprint."""

    fingerprint: str
    dataset: str
    task: str
    input_id: str
    model: str
    prompt_version: str
    round: int
    attempt: int
    run_id: str
    backend: str
    sampling: str  # JSON
    prompt: str  # JSON messages
    raw_output: str
    parsed: str | None  # JSON; None when invalid
    valid: bool
    error: str | None
    prompt_tokens: int | None  # None: an imported row whose file gave no token counts
    completion_tokens: int | None
    latency_s: float | None
    created_at: datetime
    prompt_set: str = LOCAL_PROMPT_SET
    provenance: str = GENERATED


GENERATION_ARROW_SCHEMA = pa.schema(
    [
        ("fingerprint", pa.string()), ("dataset", pa.string()), ("task", pa.string()), ("input_id", pa.string()),
        ("model", pa.string()), ("prompt_version", pa.string()), ("round", pa.int32()), ("attempt", pa.int32()),
        ("run_id", pa.string()), ("backend", pa.string()), ("sampling", pa.string()), ("prompt", pa.string()),
        ("raw_output", pa.string()), ("parsed", pa.string()), ("valid", pa.bool_()), ("error", pa.string()),
        ("prompt_tokens", pa.int32()), ("completion_tokens", pa.int32()), ("latency_s", pa.float64()),
        ("created_at", pa.timestamp("us")), ("prompt_set", pa.string()), ("provenance", pa.string()),
    ]
)


@dataclass(frozen=True)
class GenerationRunRecord:
    """One `generation_runs` row: one generate command's task and round (GENRE Table 8)."""

    run_id: str
    dataset: str
    task: str
    model: str
    backend: str
    round: int
    started_at: datetime
    requests: int
    new: int
    skipped: int
    valid: int
    invalid: int
    # None (NULL since migration 009): unknown, for an imported run whose file did not say.
    attempts: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    engine_seconds: float | None
    startup_seconds: float | None
    wall_seconds: float | None
    price_per_hour: float | None
    cost: float | None
    prompt_set: str = LOCAL_PROMPT_SET
    provenance: str = GENERATED  # generated | imported
    # The profile method of the source its outputs belong to (migration 010): the profiler's,
    # the chain's profiles'; 'generate' for the other tasks.
    method: str = DEFAULT_METHOD
    # The dtype the engine computed in (migration 011); None: unknown (imported, no engine started).
    dtype: str | None = None


@dataclass(frozen=True)
class FidelityRecord:
    """One `profile_fidelity` row."""

    dataset: str
    run_id: str
    model: str
    round: int
    precision_at_3: float
    recall: float
    region_accuracy: float
    users: int
    created_at: datetime
    # The same metrics for random profiles of the same sizes (pipeline/fidelity.chance_levels).
    chance_precision_at_3: float | None = None
    chance_recall: float | None = None
    chance_region_accuracy: float | None = None


class Profile(NamedTuple):
    """A generated user profile; a tuple so fidelity scoring can unpack it."""

    topics: list[str]
    regions: list[str]


@dataclass(frozen=True)
class SyntheticNewsItem:
    """One row of the `synthetic_news` view."""

    user_id: str
    nid: str
    position: int
    title: str
    abstract: str
    category: str
    source_task: str  # news | chain


# -- writes ----------------------------------------------------------------------------------


def write_generations(store: Store, records: Sequence[GenerationRecord]) -> None:
    """One transaction per batch; a stored key is replaced, never duplicated."""
    if not records:
        return
    rows = pa.Table.from_pylist([asdict(r) for r in records], schema=GENERATION_ARROW_SCHEMA)
    with store.transaction() as conn, store.registered("_generation_rows", rows) as view:
        conn.execute(f"INSERT OR REPLACE INTO generations BY NAME SELECT * FROM {view}")


def write_imported_generations(store: Store, records: Sequence[GenerationRecord], run: GenerationRunRecord) -> None:
    """An import's rows and its one `generation_runs` row, in one transaction: both or neither."""
    rows = pa.Table.from_pylist([asdict(r) for r in records], schema=GENERATION_ARROW_SCHEMA)
    with store.transaction() as conn, store.registered("_generation_rows", rows) as view:
        conn.execute(f"INSERT OR REPLACE INTO generations BY NAME SELECT * FROM {view}")
        _insert_record(conn, "generation_runs", run, replace=True)
        _refresh_imported_runs(conn, run.dataset, run.task)


def _refresh_imported_runs(conn: duckdb.DuckDBPyConnection, dataset: str, task: str) -> None:
    """A re-import replaces earlier imports' rows (same keys): an earlier import run keeps only the
    rows it still owns in its counts and totals, and one that owns none is dropped, so no row's
    tokens are counted twice. A total stays unknown (NULL) unless every owned row gave it."""
    conn.execute(
        """
        DELETE FROM generation_runs r WHERE r.provenance = ? AND r.dataset = ? AND r.task = ?
          AND NOT EXISTS (SELECT 1 FROM generations g WHERE g.run_id = r.run_id AND g.dataset = r.dataset
                          AND g.task = r.task)
        """,
        [IMPORTED, dataset, task],
    )
    conn.execute(
        """
        UPDATE generation_runs r SET new = o.rows, valid = o.valid, prompt_tokens = o.prompt_tokens,
               completion_tokens = o.completion_tokens, engine_seconds = o.engine_seconds
        FROM (SELECT run_id, count(*) AS rows, count(*) FILTER (WHERE valid) AS valid,
                     CASE WHEN bool_and(prompt_tokens IS NOT NULL) THEN sum(prompt_tokens) END AS prompt_tokens,
                     CASE WHEN bool_and(completion_tokens IS NOT NULL) THEN sum(completion_tokens) END
                       AS completion_tokens,
                     CASE WHEN bool_and(latency_s IS NOT NULL) THEN sum(latency_s) END AS engine_seconds
              FROM generations WHERE dataset = ? AND task = ? GROUP BY run_id) o
        WHERE r.run_id = o.run_id AND r.provenance = ? AND r.dataset = ? AND r.task = ?
        """,
        [dataset, task, IMPORTED, dataset, task],
    )


def _insert_record(conn: duckdb.DuckDBPyConnection, table: str, record: Any, replace: bool = False) -> None:
    names = [f.name for f in fields(record)]
    select = ", ".join(f'? AS "{name}"' for name in names)
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    conn.execute(f"{verb} INTO {table} BY NAME SELECT {select}", [getattr(record, n) for n in names])


def record_generation_run(store: Store, record: GenerationRunRecord) -> None:
    """Store one task-and-round cost row; the same (run_id, task, round) again replaces it."""
    with store.transaction() as conn:
        _insert_record(conn, "generation_runs", record, replace=True)


def record_fidelity(store: Store, record: FidelityRecord) -> None:
    with store.transaction() as conn:
        _insert_record(conn, "profile_fidelity", record)


# -- reads the pipeline plans from -------------------------------------------------------------


def valid_fingerprints(conn: duckdb.DuckDBPyConnection, dataset: str, task: str) -> set[str]:
    rows = conn.execute(
        "SELECT fingerprint FROM generations WHERE dataset = ? AND task = ? AND valid", [dataset, task]
    ).fetchall()
    return {row[0] for row in rows}


# The pipeline's readers of earlier outputs take the generating model and prompt set: a round
# (or the chain) reads only what the same source wrote (None: any, as before issue 9).
_OF_MODEL = "AND (?::VARCHAR IS NULL OR model = ?) AND (?::VARCHAR IS NULL OR prompt_set = ?)"
# A generator's requests for one user and round: one, or (one news per request) one per
# `news_index` of the sampling key, each kept on its own.
_NEWS_REQUEST = "coalesce(sampling ->> 'news_index', '')"


def enhanced_titles_before(conn: duckdb.DuckDBPyConnection, dataset: str, before_round: int,
                           model: str | None = None, prompt_set: str | None = None) -> dict[str, str]:
    """Latest valid enhanced title per nid from rounds before `before_round` (iterative updating)."""
    if before_round <= 1:
        return {}
    rows = conn.execute(
        f"""
        SELECT input_id, parsed ->> 'title' FROM generations
        WHERE dataset = ? AND task = 'summarize' AND valid AND round < ? {_OF_MODEL}
        QUALIFY row_number() OVER (PARTITION BY input_id ORDER BY round DESC, created_at DESC, fingerprint) = 1
        """,
        [dataset, before_round, model, model, prompt_set, prompt_set],
    ).fetchall()
    return dict(rows)


def profiles_up_to(conn: duckdb.DuckDBPyConnection, dataset: str, up_to_round: int,
                   model: str | None = None, prompt_set: str | None = None,
                   method: str | None = None) -> dict[str, Profile]:
    """Latest valid profile per user from rounds up to `up_to_round`, of one profiler method
    (generate | score | label; None: any), so the chain reads the profiles of the method it was
    resolved with, never a newer one of another method."""
    rows = conn.execute(
        f"""
        SELECT input_id, from_json(parsed -> 'topics', '["VARCHAR"]'), from_json(parsed -> 'regions', '["VARCHAR"]')
        FROM generations
        WHERE dataset = ? AND task = 'profile' AND valid AND round <= ? {_OF_MODEL}
          AND (?::VARCHAR IS NULL OR source_method(task, sampling) = ?)
        QUALIFY row_number() OVER (PARTITION BY input_id ORDER BY round DESC, created_at DESC, fingerprint) = 1
        """,
        [dataset, up_to_round, model, model, prompt_set, prompt_set, method, method],
    ).fetchall()
    return {user: Profile(list(topics or []), list(regions or [])) for user, topics, regions in rows}


LABEL_TASKS = ("label", "label_scores")
"""The labelling profilers' per-news tasks: `label` (decoded labels) and `label_scores` (decoded
labels plus every topic's first-token probability, `--profile-method label-score`)."""


def news_labels_up_to(conn: duckdb.DuckDBPyConnection, dataset: str, up_to_round: int,
                      model: str | None = None, prompt_set: str | None = None,
                      task: str = "label") -> dict[str, tuple[str, str | None, list[float] | None]]:
    """Latest valid label per news item of one of LABEL_TASKS from rounds up to `up_to_round`:
    nid -> (topic, state or None, the 19 topic probabilities in PROFILE_TOPICS' order or None)."""
    if task not in LABEL_TASKS:
        raise ValueError(f"{task!r} is not a labelling task ({', '.join(LABEL_TASKS)})")
    rows = conn.execute(
        f"""
        SELECT input_id, parsed ->> 'topic', parsed ->> 'state', parsed ->> 'topic_scores' FROM generations
        WHERE dataset = ? AND task = ? AND valid AND round <= ? {_OF_MODEL}
        QUALIFY row_number() OVER (PARTITION BY input_id ORDER BY round DESC, created_at DESC, fingerprint) = 1
        """,
        [dataset, task, up_to_round, model, model, prompt_set, prompt_set],
    ).fetchall()
    return {nid: (topic, state, json.loads(scores) if scores else None) for nid, topic, state, scores in rows}


def profiles_with_fingerprints(conn: duckdb.DuckDBPyConnection, fingerprints: Iterable[str]) -> dict[str, Profile]:
    """The valid profiles among the given keys, per user (what one run's profile task wrote)."""
    rows = conn.execute(
        "SELECT input_id, from_json(parsed -> 'topics', '[\"VARCHAR\"]'), from_json(parsed -> 'regions', '[\"VARCHAR\"]') "
        "FROM generations WHERE valid AND task = 'profile' AND fingerprint IN (SELECT unnest(?::VARCHAR[]))",
        [list(fingerprints)],
    ).fetchall()
    return {user: Profile(list(topics or []), list(regions or [])) for user, topics, regions in rows}


def chain_items(conn: duckdb.DuckDBPyConnection, dataset: str, round_: int,
                model: str | None = None, prompt_set: str | None = None,
                method: str | None = None) -> dict[str, list[tuple[str, str]]]:
    """(category, title) of the chain's generated news per user in one round (fed back next
    round), in request order where one request wrote each news; of the chain made from
    profiles of `method` (None: any)."""
    rows = conn.execute(
        f"""
        SELECT input_id, from_json(parsed -> 'items', '[{{"title": "VARCHAR", "category": "VARCHAR"}}]')
        FROM generations
        WHERE dataset = ? AND task = 'chain' AND valid AND round = ? {_OF_MODEL}
          AND (?::VARCHAR IS NULL OR source_method(task, sampling) = ?)
        QUALIFY row_number() OVER (PARTITION BY input_id, {_NEWS_REQUEST} ORDER BY created_at DESC, fingerprint) = 1
        ORDER BY input_id, try_cast(sampling ->> 'news_index' AS INTEGER) NULLS FIRST
        """,
        [dataset, round_, model, model, prompt_set, prompt_set, method, method],
    ).fetchall()
    result: dict[str, list[tuple[str, str]]] = {}
    for user, items in rows:
        result.setdefault(user, []).extend((item["category"], item["title"]) for item in items or [])
    return result


# -- the views the training stage reads ------------------------------------------------------------


def _source_filter(source: GenerationSource | None, by_method: bool = False) -> tuple[str, list[object]]:
    """SQL condition and parameters on a view's rows of `source`; `by_method` for the rows made
    from profiles (user_profiles, the chain's synthetic news), whose method must be the source's."""
    if source is None:
        return "", []
    if by_method:
        return " AND model = ? AND prompt_set = ? AND method = ?", [source.llm, source.prompt_set, source.method]
    return " AND model = ? AND prompt_set = ?", [source.llm, source.prompt_set]


def read_enhanced_titles(conn: duckdb.DuckDBPyConnection, dataset: str,
                         source: GenerationSource | None = None) -> dict[str, str]:
    """nid -> the latest valid enhanced title of `source` (view enhanced_titles; None: the store
    must hold one source, else the newest source's title wins per nid)."""
    where, params = _source_filter(source)
    rows = conn.execute(f"SELECT nid, title FROM enhanced_titles WHERE dataset = ?{where} ORDER BY nid, created_at",
                        [dataset, *params]).fetchall()
    return dict(rows)


def read_user_profiles(conn: duckdb.DuckDBPyConnection, dataset: str,
                       source: GenerationSource | None = None) -> dict[str, Profile]:
    """user_id -> the latest valid profile of `source`, of its method (view user_profiles)."""
    where, params = _source_filter(source, by_method=True)
    rows = conn.execute(
        f"SELECT user_id, topics, regions FROM user_profiles WHERE dataset = ?{where} ORDER BY user_id, created_at",
        [dataset, *params],
    ).fetchall()
    return {user: Profile(list(topics or []), list(regions or [])) for user, topics, regions in rows}


def read_synthetic_news(conn: duckdb.DuckDBPyConnection, dataset: str, source_task: str,
                        source: GenerationSource | None = None) -> list[SyntheticNewsItem]:
    """The generated news of one source task (news | chain), by user and position; the chain's
    of the source's profile method."""
    where, params = _source_filter(source, by_method=source_task == "chain")
    rows = conn.execute(
        "SELECT user_id, nid, position, title, abstract, category, source_task FROM synthetic_news "
        f"WHERE dataset = ? AND source_task = ?{where} ORDER BY user_id, position, model, prompt_set",
        [dataset, source_task, *params],
    ).fetchall()
    return [SyntheticNewsItem(*row) for row in rows]


def parsed_json(value: dict[str, Any] | None) -> str | None:
    """How a parsed output is stored in `generations.parsed`."""
    return json.dumps(value, ensure_ascii=False) if value is not None else None
