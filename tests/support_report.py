"""Hand-written rows for the report tests, inserted into the real store tables."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta

from genre_local.store import Store

_ids = itertools.count(1)
BASE_TIME = datetime(2026, 1, 1, 12, 0, 0)


def add_dataset(store: Store, name: str) -> None:
    store.conn.execute(
        "INSERT INTO datasets VALUES (?, 'tests', ?, ['train', 'dev'], 0, 0, false)", [name, BASE_TIME]
    )


def insert(store: Store, table: str, row: dict[str, object]) -> None:
    """One row into `table`, each value into the column of its name."""
    columns = ", ".join(f'"{name}"' for name in row)
    store.conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' for _ in row)})", list(row.values()))


def add_run(
    store: Store,
    dataset: str,
    model: str,
    variant: str,
    seed: int,
    metrics: dict[tuple[str, str], float | None],
    *,
    ng_k: int = 0,
    features: str = "title,category",
    eval_split: str = "dev",
    other_split: dict[tuple[str, str], float] | None = None,
    created_at: datetime | None = None,
    stop_auc: tuple[float | None, ...] = (0.5,),
    source: tuple[str, ...] | None = None,
    stop_split: str | None = "dev",
    config: dict | None = None,
    autocast: str | None = None,
) -> str:
    """One `runs` row, its `run_metrics`, and one `run_epochs` row per `stop_auc` value;
    metrics maps (user_group, metric) -> value. `source`: the (LLM, prompt set[, method]) the
    run's variant read, stored in run_sources. `config`: the settings it was trained with (the
stored config; `{}` by default, the same for every run). `autocast`: runs.autocast (None: not
    recorded, as runs stored before migration 014)."""
    number = next(_ids)
    run_id = f"run{number:04d}"
    kind = "matching" if model in ("naml", "lstur", "nrms", "plmnr") else "ranking"
    epochs = len(stop_auc)
    seconds = [1.0 + i for i in range(epochs)]
    rates = [10.0 * (i + 1) for i in range(epochs)]
    run = {
        "run_id": run_id, "experiment_id": f"exp{number}", "model": model, "kind": kind, "dataset": dataset,
        "variant": variant, "features": features, "ng_k": ng_k, "seed": seed, "config": json.dumps(config or {}),
        "data_fingerprint": "fp", "variant_stats": "{}", "eval_split": eval_split, "epochs_run": epochs,
        "best_epoch": 1, "stopped_early": False, "epoch_seconds": seconds, "train_samples_per_s": rates,
        "stop_auc": list(stop_auc), "eval_impressions_per_s": 100.0, "processes": 1, "device": "cpu",
        "created_at": created_at or BASE_TIME + timedelta(seconds=number), "stop_split": stop_split,
    }
    if autocast is not None:
        run["autocast"] = autocast
    # A test may build a store of an older schema: the AUC columns were dev_auc before migration 013.
    auc_column = "stop_auc" if "stop_auc" in {c[0] for c in store.conn.execute("DESCRIBE runs").fetchall()} else "dev_auc"
    run[auc_column] = run.pop("stop_auc")
    insert(store, "runs", run)
    for i, auc in enumerate(stop_auc):
        insert(store, "run_epochs", {"run_id": run_id, "epoch": i + 1, "seconds": seconds[i],
                                     "samples_per_s": rates[i], "data_wait_seconds": 0.0, auc_column: auc})
    if source is not None:
        llm, prompt_set, *method = source
        store.conn.execute("INSERT INTO run_sources BY NAME SELECT ? AS run_id, ? AS llm, ? AS prompt_set, "
                           "? AS method", [run_id, llm, prompt_set, method[0] if method else "generate"])
    rows = [(run_id, eval_split, g, m, v) for (g, m), v in metrics.items()]
    other = "test" if eval_split == "dev" else "dev"
    rows += [(run_id, other, g, m, v) for (g, m), v in (other_split or {}).items()]
    store.conn.executemany("INSERT INTO run_metrics (run_id, split, user_group, metric, value) VALUES (?, ?, ?, ?, ?)", rows)
    return run_id


def all_metrics(auc: float, mrr: float = 0.3, ndcg5: float = 0.35, ndcg10: float = 0.4,
                groups: tuple[str, ...] = ("all",)) -> dict[tuple[str, str], float]:
    values = {"auc": auc, "mrr": mrr, "ndcg@5": ndcg5, "ndcg@10": ndcg10}
    return {(g, m): v for g in groups for m, v in values.items()}


def add_generation_run(
    store: Store, dataset: str, task: str, *, run_id: str | None = None, prompt_tokens: int = 1000,
    completion_tokens: int = 200, engine_seconds: float = 36.0, startup_seconds: float = 0.0,
    wall_seconds: float = 40.0, price_per_hour: float | None = None, requests: int = 10,
    model: str = "llama", prompt_set: str = "compact", method: str = "generate",
) -> None:
    run_id = run_id or f"gen{next(_ids):04d}"
    cost = None if price_per_hour is None else price_per_hour * (wall_seconds + startup_seconds) / 3600
    store.conn.execute(
        "INSERT INTO generation_runs BY NAME SELECT ? AS run_id, ? AS dataset, ? AS task, ? AS model, "
        "'vllm' AS backend, 1 AS round, ? AS started_at, ? AS requests, ? AS new, 0 AS skipped, ? AS valid, "
        "0 AS invalid, ? AS attempts, ? AS prompt_tokens, ? AS completion_tokens, ? AS engine_seconds, "
        "? AS startup_seconds, ? AS wall_seconds, ? AS price_per_hour, ? AS cost, ? AS prompt_set, ? AS method",
        [run_id, dataset, task, model, BASE_TIME, requests, requests, requests, requests, prompt_tokens,
         completion_tokens, engine_seconds, startup_seconds, wall_seconds, price_per_hour, cost, prompt_set, method],
    )


def add_fidelity(
    store: Store, dataset: str, p3: float, recall: float, region: float, users: int = 50,
    chance: tuple[float, float, float] | None = (0.12, 0.15, 0.02),
) -> None:
    """chance: (precision@3, recall, region accuracy) of random profiles; None as on old rows."""
    store.conn.execute(
        "INSERT INTO profile_fidelity VALUES (?, ?, 'llama', 1, ?, ?, ?, ?, ?, ?, ?, ?)",
        [dataset, f"gen{next(_ids):04d}", p3, recall, region, users, BASE_TIME, *(chance or (None, None, None))],
    )
