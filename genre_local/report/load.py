"""The only place the report reads SQL: store tables -> the plain rows of rows.py."""

from __future__ import annotations

from genre_local.report.rows import METRICS, FidelityRow, GenerationRunRow, MetricRow
from genre_local.store import Store


def load_runs(store: Store, dataset: str) -> list[MetricRow]:
    """Every stored run's metrics on its reported split (view run_results, 003_training.sql).

    NULL values (no impression of a user group qualified) and non-metric counts are left out.
    """
    placeholders = ", ".join("?" for _ in METRICS)
    cursor = store.conn.execute(
        "SELECT model, variant, seed, ng_k, features, split, user_group, metric, value, created_at, run_id "
        f"FROM run_results WHERE dataset = ? AND metric IN ({placeholders}) AND value IS NOT NULL "
        "ORDER BY created_at, run_id",
        [dataset, *METRICS],
    )
    return [
        MetricRow(model=m, variant=v, seed=int(s), ng_k=int(k), features=f, split=sp, group=g,
                  metric=me, value=float(val), created_at=ts, run_id=rid)
        for m, v, s, k, f, sp, g, me, val, ts, rid in cursor.fetchall()
    ]


def load_generation_runs(store: Store, dataset: str) -> list[GenerationRunRow]:
    cursor = store.conn.execute(
        "SELECT run_id, task, model, backend, round, requests, new, valid, invalid, prompt_tokens, "
        "completion_tokens, engine_seconds, startup_seconds, wall_seconds, price_per_hour, cost "
        "FROM generation_runs WHERE dataset = ? ORDER BY started_at, run_id, task, round",
        [dataset],
    )
    return [GenerationRunRow(*row) for row in cursor.fetchall()]


def load_fidelity(store: Store, dataset: str) -> list[FidelityRow]:
    cursor = store.conn.execute(
        "SELECT run_id, model, round, precision_at_3, recall, region_accuracy, users, created_at "
        "FROM profile_fidelity WHERE dataset = ? ORDER BY created_at, run_id, round",
        [dataset],
    )
    return [FidelityRow(*row) for row in cursor.fetchall()]
