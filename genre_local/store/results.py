"""The report's reads: typed rows from the store's result tables, columns matched by name.

Each helper's SELECT names its columns after the fields of the row it fills, and `_typed_rows`
checks the two agree, so a renamed column fails loudly here instead of shifting values into
the wrong field. The report computes everything else from these rows, never from SQL.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields, replace
from datetime import datetime
from typing import Any, TypeVar

from recsys.catalog import METRICS

from genre_local.store.connection import Store
from genre_local.store import generations
from genre_local.store.generations import DEFAULT_METHOD

Row = TypeVar("Row")


def _typed_rows(store: Store, row_type: type[Row], sql: str, params: list[Any]) -> list[Row]:
    """Run `sql` and build one `row_type` per result row, each column into the field of its name."""
    cursor = store.conn.execute(sql, params)
    columns = [d[0] for d in cursor.description]
    names = {f.name for f in fields(row_type)}  # type: ignore[arg-type]
    required = {f.name for f in fields(row_type)  # type: ignore[arg-type]
                if f.default is MISSING and f.default_factory is MISSING}
    unknown = [c for c in columns if c not in names]
    missing = sorted(required - set(columns))
    if unknown or missing:
        raise RuntimeError(f"{row_type.__name__}: query columns do not match the row's fields "
                           f"(unknown {unknown}, missing {missing})")
    return [row_type(**dict(zip(columns, values, strict=True))) for values in cursor.fetchall()]


@dataclass(frozen=True)
class MetricRow:
    """One metric of one training run (model, variant, seed) on one split and user group."""

    model: str
    variant: str  # original | ns | up | ng | chain | combinations such as ns+up+ng
    seed: int
    ng_k: int  # synthetic news per cold user; meaningless (normalized to 0) without ng/chain
    features: str  # comma-separated news features, e.g. "title,category"
    split: str  # dev | test
    group: str  # all | new | warm
    metric: str  # auc | mrr | ndcg@5 | ndcg@10
    value: float
    created_at: datetime | None = None  # newest run wins when a seed was trained twice
    run_id: str | None = None
    source: str | None = None  # the source's label the variant read (run_sources); None for original
    config: str | None = None  # the run's stored config (JSON): the settings it was trained with


@dataclass(frozen=True)
class GenerationRunRow:
    """One `generation_runs` row: the cost of one generate command's task and round."""

    run_id: str
    task: str  # summarize | profile | news | chain
    model: str  # the LLM source: the generating model's id
    backend: str
    round: int
    requests: int
    new: int
    valid: int
    invalid: int
    # None: unknown (an imported run whose file gave no such column; never read as 0)
    prompt_tokens: int | None
    completion_tokens: int | None
    engine_seconds: float | None
    startup_seconds: float | None
    wall_seconds: float | None
    price_per_hour: float | None
    cost: float | None
    started_at: datetime | None = None
    prompt_set: str = "compact"
    provenance: str = "generated"  # generated | imported
    method: str = DEFAULT_METHOD  # the profile method of the source its outputs belong to (migration 010)

    @property
    def source(self) -> str:
        """The generation source's label, as runs record it (GenerationSource.label)."""
        return generations.GenerationSource(self.model, self.prompt_set, self.method).label


@dataclass(frozen=True)
class FidelityRow:
    """One `profile_fidelity` row: generated profiles scored against the synthetic truth."""

    run_id: str
    model: str
    round: int
    precision_at_3: float
    recall: float
    region_accuracy: float
    users: int
    created_at: datetime | None = None
    # Chance levels (random profiles of the same sizes); None on rows stored before migration 007.
    chance_precision_at_3: float | None = None
    chance_recall: float | None = None
    chance_region_accuracy: float | None = None
    # The source of the profiles scored, from the run's profile row in generation_runs (None
    # where there is none): profiles of two methods are two sources (migration 010).
    prompt_set: str | None = None
    method: str | None = None

    @property
    def source(self) -> str:
        """The generation source's label; the LLM alone where the run row is missing."""
        if self.prompt_set is None:
            return self.model
        return generations.GenerationSource(self.model, self.prompt_set, self.method or DEFAULT_METHOD).label


# GenerationSource.label of a run's source (run_sources s): LLM/SET, '+METHOD' for profiles not
# generated (migration 010); NULL for a run that read no generations.
_RUN_SOURCE_SQL = "s.llm || '/' || s.prompt_set || CASE WHEN s.method = 'generate' THEN '' ELSE '+' || s.method END AS source"


def load_metric_rows(store: Store, dataset: str) -> list[MetricRow]:
    """Every stored run's metrics on its reported split (view run_results, 003_training.sql),
    each row with its run's stored config (the settings the report compares runs on).

    NULL values (no impression of a user group qualified) and non-metric counts are left out.
    """
    placeholders = ", ".join("?" for _ in METRICS)
    return _typed_rows(
        store, MetricRow,
        "SELECT r.model, r.variant, r.seed, r.ng_k, r.features, r.split, r.user_group AS \"group\", r.metric, "
        "r.value, r.created_at, r.run_id, " + _RUN_SOURCE_SQL + ", c.config "
        "FROM run_results r JOIN runs c USING (run_id) LEFT JOIN run_sources s USING (run_id) "
        f"WHERE r.dataset = ? AND r.metric IN ({placeholders}) AND r.value IS NOT NULL "
        "ORDER BY r.created_at, r.run_id",
        [dataset, *METRICS],
    )


@dataclass(frozen=True)
class EpochRow:
    """One trained epoch of one run (run_epochs joined with the run's configuration)."""

    run_id: str
    model: str
    variant: str
    ng_k: int
    features: str
    seed: int
    epoch: int  # 1-based
    stop_auc: float | None  # AUC on the stopping split (stop_split); None without one
    samples_per_s: float
    seconds: float
    created_at: datetime | None = None
    stop_split: str | None = None  # "dev" | "train-holdout" | None (no early stopping)
    source: str | None = None  # the generation source's label (as MetricRow.source); None: none recorded
    autocast: str | None = None  # "bfloat16" | "float32" (runs.autocast); None: stored before it was recorded


def load_epoch_rows(store: Store, dataset: str) -> list[EpochRow]:
    """Every stored run's epochs, run by run in the order they were stored, epochs in order."""
    return _typed_rows(
        store, EpochRow,
        "SELECT r.run_id, r.model, r.variant, r.ng_k, r.features, r.seed, e.epoch, e.stop_auc, e.samples_per_s, "
        "e.seconds, r.created_at, r.stop_split, " + _RUN_SOURCE_SQL + ", r.autocast FROM run_epochs e "
        "JOIN runs r ON r.run_id = e.run_id LEFT JOIN run_sources s ON s.run_id = r.run_id WHERE r.dataset = ? "
        "ORDER BY r.created_at, r.run_id, e.epoch",
        [dataset],
    )


def load_generation_runs(store: Store, dataset: str) -> list[GenerationRunRow]:
    return _typed_rows(
        store, GenerationRunRow,
        "SELECT run_id, task, model, backend, round, requests, new, valid, invalid, prompt_tokens, "
        "completion_tokens, engine_seconds, startup_seconds, wall_seconds, price_per_hour, cost, started_at, "
        "prompt_set, provenance, method FROM generation_runs WHERE dataset = ? ORDER BY started_at, run_id, task, round",
        [dataset],
    )


def load_fidelity(store: Store, dataset: str) -> list[FidelityRow]:
    return _typed_rows(
        store, FidelityRow,
        "SELECT f.run_id, f.model, f.round, precision_at_3, recall, region_accuracy, users, created_at, "
        "chance_precision_at_3, chance_recall, chance_region_accuracy, g.prompt_set, g.method "
        "FROM profile_fidelity f LEFT JOIN (SELECT DISTINCT run_id, dataset, round, model, prompt_set, method "
        " FROM generation_runs WHERE task = 'profile') g "
        "ON g.run_id = f.run_id AND g.dataset = f.dataset AND g.round = f.round AND g.model = f.model "
        "WHERE f.dataset = ? ORDER BY created_at, f.run_id, f.round",
        [dataset],
    )


# ------------------------------------------------------------------------------------------
# Generation outputs, for the report's samples (`generations show`, the HTML report)
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GenerationSource:
    """One (task, LLM, prompt set, profile method) source's stored outputs: how many inputs have
    a valid / an invalid row."""

    task: str
    model: str  # the LLM: generations.model, the generating model's id
    valid: int
    invalid: int
    prompt_set: str = "compact"
    method: str = DEFAULT_METHOD  # the profile method of the source (migration 010)

    @property
    def source(self) -> generations.GenerationSource:
        return generations.GenerationSource(self.model, self.prompt_set, self.method)

    @property
    def label(self) -> str:
        return self.source.label


@dataclass(frozen=True)
class GenerationOutput:
    """The latest stored row of one input for one task and LLM (highest round, then newest)."""

    input_id: str
    task: str
    model: str
    round: int
    attempt: int
    run_id: str
    valid: bool
    parsed: str | None  # the normalized output as JSON text; None when invalid
    raw_output: str
    error: str | None


# The latest row per (input, task, model) among valid or among invalid rows: the same order
# as the views the training stage reads (002_generation.sql).
_LATEST = ("QUALIFY row_number() OVER (PARTITION BY input_id ORDER BY round DESC, created_at DESC, fingerprint) = 1")


def load_generation_sources(store: Store, dataset: str) -> list[GenerationSource]:
    return _typed_rows(
        store, GenerationSource,
        "SELECT task, model, prompt_set, source_method(task, sampling) AS method, "
        "count(DISTINCT input_id) FILTER (WHERE valid) AS valid, "
        "count(DISTINCT input_id) FILTER (WHERE NOT valid) AS invalid "
        "FROM generations WHERE dataset = ? GROUP BY ALL ORDER BY task, model, prompt_set, method",
        [dataset],
    )


# A source filter: one prompt set of the LLM, or (NULL) every set of it; one profile method of
# it (migration 010), or (NULL) every method.
_OF_SET = " AND (?::VARCHAR IS NULL OR prompt_set = ?) AND (?::VARCHAR IS NULL OR source_method(task, sampling) = ?)"
# Sets that write one news per request store one row per news_index of an input: latest per request.
_LATEST_PER_REQUEST = ("QUALIFY row_number() OVER (PARTITION BY input_id, coalesce(sampling ->> 'news_index', '') "
                       "ORDER BY round DESC, created_at DESC, fingerprint) = 1")


def load_generation_input_ids(store: Store, dataset: str, task: str, model: str, valid: bool,
                              prompt_set: str | None = None, method: str | None = None) -> list[str]:
    """Every input id with a valid (or an invalid) row for the task and LLM (and prompt set, and
    profile method), sorted."""
    rows = store.conn.execute(
        "SELECT DISTINCT input_id FROM generations WHERE dataset = ? AND task = ? AND model = ? AND valid = ?"
        + _OF_SET + " ORDER BY input_id",
        [dataset, task, model, valid, prompt_set, prompt_set, method, method],
    ).fetchall()
    return [r[0] for r in rows]


def load_generation_outputs(store: Store, dataset: str, task: str, model: str, valid: bool,
                            input_ids: list[str], prompt_set: str | None = None,
                            method: str | None = None) -> list[GenerationOutput]:
    """The latest valid (or invalid) output of each of `input_ids`, in the order given. Where a
    prompt set wrote one news per request, an input's valid requests are one output (their items
    in request order); of invalid ones, the first request's row stands for the input."""
    if not input_ids:
        return []
    rows = _typed_rows(
        store, GenerationOutput,
        "SELECT input_id, task, model, round, attempt, run_id, valid, CAST(parsed AS VARCHAR) AS parsed, "
        "raw_output, error FROM generations "
        "WHERE dataset = ? AND task = ? AND model = ? AND valid = ? AND list_contains(?, input_id)" + _OF_SET
        + " " + _LATEST_PER_REQUEST + " ORDER BY input_id, try_cast(sampling ->> 'news_index' AS INTEGER) NULLS FIRST",
        [dataset, task, model, valid, input_ids, prompt_set, prompt_set, method, method],
    )
    by_id: dict[str, GenerationOutput] = {}
    for r in rows:
        first = by_id.get(r.input_id)
        if first is None:
            by_id[r.input_id] = r
        elif valid and first.parsed and r.parsed:
            items = json.loads(first.parsed).get("items", []) + json.loads(r.parsed).get("items", [])
            by_id[r.input_id] = replace(first, parsed=json.dumps({"items": items}, ensure_ascii=False))
    return [by_id[i] for i in input_ids if i in by_id]


def load_news_titles(store: Store, dataset: str, nids: list[str]) -> dict[str, str]:
    if not nids:
        return {}
    rows = store.conn.execute(
        "SELECT nid, title FROM news WHERE dataset = ? AND list_contains(?, nid)", [dataset, nids]
    ).fetchall()
    return dict(rows)


def load_user_histories(store: Store, dataset: str, user_ids: list[str]) -> dict[str, tuple[str, ...]]:
    """Each user's history (nids, oldest first) as the generation stage read it: from the latest
    train impression, else the latest of any split (pipeline/inputs.py)."""
    if not user_ids:
        return {}
    rows = store.conn.execute(
        "SELECT user_id, history FROM impressions WHERE dataset = ? AND list_contains(?, user_id) "
        "QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY (split = 'train') DESC, time DESC, "
        "impression_id DESC) = 1",
        [dataset, user_ids],
    ).fetchall()
    return {user: tuple(history) for user, history in rows}


def load_user_truth(store: Store, dataset: str, user_ids: list[str]) -> dict[str, tuple[tuple[str, ...], str]]:
    """Synthetic data's true interests: user -> (topics, home region); empty on real MIND."""
    if not user_ids:
        return {}
    rows = store.conn.execute(
        "SELECT user_id, topics, region FROM user_truth WHERE dataset = ? AND list_contains(?, user_id)",
        [dataset, user_ids],
    ).fetchall()
    return {user: (tuple(topics), region) for user, topics, region in rows}


def load_profiles(store: Store, dataset: str, model: str, user_ids: list[str], prompt_set: str | None = None,
                  method: str | None = None) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """The latest valid profile (topics, regions) the LLM (with the prompt set, of the profile
    method) wrote for each user: what chain read."""
    if not user_ids:
        return {}
    rows = store.conn.execute(
        "SELECT input_id, from_json(parsed -> 'topics', '[\"VARCHAR\"]'), from_json(parsed -> 'regions', '[\"VARCHAR\"]') "
        "FROM generations WHERE dataset = ? AND task = 'profile' AND model = ? AND valid "
        "AND list_contains(?, input_id)" + _OF_SET + " " + _LATEST,
        [dataset, model, user_ids, prompt_set, prompt_set, method, method],
    ).fetchall()
    return {user: (tuple(topics or ()), tuple(regions or ())) for user, topics, regions in rows}


@dataclass(frozen=True)
class VariantSource:
    """Which LLM wrote the generations a training variant reads today, per generation task."""

    task: str  # summarize | profile | news | chain
    model: str
    items: int  # news items (summarize) or users (profile, news, chain) it covers


def load_variant_sources(store: Store, dataset: str) -> list[VariantSource]:
    """The models behind the views variants are built from (enhanced_titles, user_profiles,
    synthetic_news): the store's present state, for runs stored before migration 006 (later
    runs record their source in run_sources, see `load_metric_rows`)."""
    return _typed_rows(
        store, VariantSource,
        "SELECT 'summarize' AS task, model, count(*) AS items FROM enhanced_titles WHERE dataset = ? GROUP BY model "
        "UNION ALL SELECT 'profile' AS task, model, count(*) AS items FROM user_profiles WHERE dataset = ? "
        "GROUP BY model "
        "UNION ALL SELECT source_task AS task, model, count(DISTINCT user_id) AS items FROM synthetic_news "
        "WHERE dataset = ? GROUP BY source_task, model ORDER BY task, model",
        [dataset, dataset, dataset],
    )


@dataclass(frozen=True)
class SourceSummary:
    """One generation source's outputs for one dataset and task (`generations list`)."""

    dataset: str
    task: str
    llm: str
    prompt_set: str
    provenance: str  # generated | imported (both, comma-separated, when a source has both)
    inputs: int  # inputs with any stored output
    valid: int  # inputs with a valid output
    prompt_tokens: int | None  # None: unknown, some row gave no token count (imported outputs)
    completion_tokens: int | None
    engine_seconds: float | None  # from generation_runs; None: unknown (no run, or a run without it)
    cost: float | None  # money from generation_runs; None without a price (or unknown, imported)
    method: str = DEFAULT_METHOD  # the profile method of the source (migration 010)
    # A task made for another that has no run row of its own (the labelling profiler's labels):
    # the tasks whose run rows count its engine time and cost (profile, or chain when the chain
    # made the profiles first); None for a task with its own rows.
    charged_to: str | None = None
    # The dtypes of the engines that decided the source's outputs (generation_runs.dtype,
    # migration 011), comma-separated, "unknown" among them for runs that wrote outputs without
    # recording one; None: no run recorded one. Runs that wrote nothing (a rerun that skipped
    # everything) do not count; a labelling profiler's profiles (aggregated without an engine)
    # have the dtype of the engines that made the labels.
    dtype: str | None = None

    @property
    def label(self) -> str:
        return generations.GenerationSource(self.llm, self.prompt_set, self.method).label


# A source's engine dtypes over its runs that wrote outputs (the labels': over the runs charged
# with them, which wrote the labels).
_DTYPES_SQL = ("CASE WHEN bool_or({run}dtype IS NOT NULL) FILTER (WHERE {run}new > 0) THEN string_agg(DISTINCT "
               "coalesce({run}dtype, 'unknown'), ',' ORDER BY coalesce({run}dtype, 'unknown')) FILTER (WHERE {run}new > 0) "
               "END AS dtype")
# Profiles these methods aggregate from the labels of the task named, with no engine of their own.
_AGGREGATED_PROFILES_SQL = "(o.task = 'profile' AND o.method IN ('label', 'label-score'))"


def load_source_summaries(store: Store, dataset: str | None = None) -> list[SourceSummary]:
    """Per dataset, task and generation source: counts, validity and cost."""
    return _typed_rows(
        store, SourceSummary,
        "WITH outputs AS ("
        " SELECT dataset, task, model AS llm, prompt_set, source_method(task, sampling) AS method,"
        "  string_agg(DISTINCT provenance, ',' ORDER BY provenance) "
        "  AS provenance, count(DISTINCT input_id) AS inputs, count(DISTINCT input_id) FILTER (WHERE valid) AS valid,"
        "  CASE WHEN bool_and(prompt_tokens IS NOT NULL) THEN sum(prompt_tokens) END AS prompt_tokens,"
        "  CASE WHEN bool_and(completion_tokens IS NOT NULL) THEN sum(completion_tokens) END AS completion_tokens"
        " FROM generations WHERE ?::VARCHAR IS NULL OR dataset = ? GROUP BY ALL"
        "), costs AS ("
        # A total is known only when every run of the source knows it (an imported run's start-up
        # is unknown, so its engine seconds count as known only with the file's latencies).
        " SELECT dataset, task, model AS llm, prompt_set, method,"
        "  CASE WHEN bool_and(engine_seconds IS NOT NULL AND (startup_seconds IS NOT NULL OR provenance = 'imported'))"
        "   THEN sum(engine_seconds + coalesce(startup_seconds, 0)) END AS engine_seconds,"
        "  CASE WHEN bool_and(cost IS NOT NULL) THEN sum(cost) END AS cost, " + _DTYPES_SQL.format(run="") +
        " FROM generation_runs GROUP BY ALL"
        "), charged AS ("
        # The runner charges the labels to the run row of the task that needed them.
        " SELECT g.dataset, g.task, g.model AS llm, g.prompt_set, source_method(g.task, g.sampling) AS method,"
        "  string_agg(DISTINCT r.task, ',' ORDER BY r.task) AS charged_to, " + _DTYPES_SQL.format(run="r.") +
        " FROM generations g JOIN generation_runs r ON r.run_id = g.run_id AND r.dataset = g.dataset"
        "  AND r.round = g.round AND r.task IN ('profile', 'chain')"
        " WHERE g.task IN ('label', 'label_scores') GROUP BY ALL"
        ") SELECT o.dataset, o.task, o.llm, o.prompt_set, o.method, o.provenance, o.inputs, o.valid, "
        "CAST(o.prompt_tokens AS BIGINT) AS prompt_tokens, CAST(o.completion_tokens AS BIGINT) AS completion_tokens, "
        "c.engine_seconds, c.cost, h.charged_to, "
        # Aggregated profiles: their own run rows' dtype is that of whatever else the run did
        # (or none, in a round that reused the labels); the labels' engines decided them.
        "CASE WHEN " + _AGGREGATED_PROFILES_SQL + " THEN l.dtype ELSE coalesce(c.dtype, h.dtype) END AS dtype "
        "FROM outputs o "
        "LEFT JOIN costs c USING (dataset, task, llm, prompt_set, method) "
        "LEFT JOIN charged h USING (dataset, task, llm, prompt_set, method) "
        "LEFT JOIN charged l ON l.dataset = o.dataset AND l.llm = o.llm AND l.prompt_set = o.prompt_set "
        " AND l.method = o.method AND l.task IN ('label', 'label_scores') "
        "ORDER BY o.dataset, o.task, o.llm, o.prompt_set, o.method",
        [dataset, dataset],
    )
