"""The report's reads: typed rows from the store's result tables, columns matched by name.

Each helper's SELECT names its columns after the fields of the row it fills, and `_typed_rows`
checks the two agree, so a renamed column fails loudly here instead of shifting values into
the wrong field. The report computes everything else from these rows, never from SQL.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from recsys.catalog import METRICS

from genre_local.store.connection import Store

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
    prompt_tokens: int
    completion_tokens: int
    engine_seconds: float
    startup_seconds: float
    wall_seconds: float
    price_per_hour: float | None
    cost: float | None
    started_at: datetime | None = None


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


def load_metric_rows(store: Store, dataset: str) -> list[MetricRow]:
    """Every stored run's metrics on its reported split (view run_results, 003_training.sql).

    NULL values (no impression of a user group qualified) and non-metric counts are left out.
    """
    placeholders = ", ".join("?" for _ in METRICS)
    return _typed_rows(
        store, MetricRow,
        "SELECT model, variant, seed, ng_k, features, split, user_group AS \"group\", metric, value, created_at, "
        f"run_id FROM run_results WHERE dataset = ? AND metric IN ({placeholders}) AND value IS NOT NULL "
        "ORDER BY created_at, run_id",
        [dataset, *METRICS],
    )


def load_generation_runs(store: Store, dataset: str) -> list[GenerationRunRow]:
    return _typed_rows(
        store, GenerationRunRow,
        "SELECT run_id, task, model, backend, round, requests, new, valid, invalid, prompt_tokens, "
        "completion_tokens, engine_seconds, startup_seconds, wall_seconds, price_per_hour, cost, started_at "
        "FROM generation_runs WHERE dataset = ? ORDER BY started_at, run_id, task, round",
        [dataset],
    )


def load_fidelity(store: Store, dataset: str) -> list[FidelityRow]:
    return _typed_rows(
        store, FidelityRow,
        "SELECT run_id, model, round, precision_at_3, recall, region_accuracy, users, created_at "
        "FROM profile_fidelity WHERE dataset = ? ORDER BY created_at, run_id, round",
        [dataset],
    )
