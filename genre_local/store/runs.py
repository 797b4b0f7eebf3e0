"""Training's reads and writes of the store: the runs, run_metrics and run_epochs tables.

Typed helpers over SQL, called by the genre-local side of training (genre_local/training.py);
recsys itself never touches the store. Rows are written by column name (Arrow tables inserted
with their column list), so a column added by a later migration cannot shift them.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from genre_local.errors import StoreError
from genre_local.store.connection import Store, now_utc, open_store

if TYPE_CHECKING:
    from genre_local.store.generations import GenerationSource
    from recsys.train import RunResult


@dataclass(frozen=True)
class RunIdentity:
    """What a stored run is a run of (the columns `report` groups by)."""

    model: str
    kind: str
    dataset: str
    variant: str
    features: str
    ng_k: int


_RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("experiment_id", pa.string()), ("model", pa.string()), ("kind", pa.string()),
    ("dataset", pa.string()), ("variant", pa.string()), ("features", pa.string()), ("ng_k", pa.int32()),
    ("seed", pa.int32()), ("config", pa.string()), ("data_fingerprint", pa.string()),
    ("variant_stats", pa.string()), ("eval_split", pa.string()), ("epochs_run", pa.int32()),
    ("best_epoch", pa.int32()), ("stopped_early", pa.bool_()), ("epoch_seconds", pa.list_(pa.float64())),
    ("train_samples_per_s", pa.list_(pa.float64())), ("stop_auc", pa.list_(pa.float64())),
    ("eval_impressions_per_s", pa.float64()), ("processes", pa.int32()), ("device", pa.string()),
    ("created_at", pa.timestamp("us")), ("stop_split", pa.string()), ("autocast", pa.string()),
])
_CHECKPOINTS_SCHEMA = pa.schema([("run_id", pa.string()), ("checkpoint", pa.string())])
_SOURCES_SCHEMA = pa.schema([("run_id", pa.string()), ("llm", pa.string()), ("prompt_set", pa.string()),
                             ("method", pa.string())])
_METRICS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("split", pa.string()), ("user_group", pa.string()),
    ("metric", pa.string()), ("value", pa.float64()),
])
_EPOCHS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("epoch", pa.int32()), ("seconds", pa.float64()), ("samples_per_s", pa.float64()),
    ("data_wait_seconds", pa.float64()), ("stop_auc", pa.float64()),
])


def new_experiment_id() -> str:
    return uuid.uuid4().hex[:12]


def write_runs(store: Store, experiment_id: str, ident: RunIdentity, config: dict, fingerprint: str,
               variant_stats: dict, device: str, results: list[RunResult],
               checkpoints: list[Path | None] | None = None, source: GenerationSource | None = None) -> list[str]:
    """One runs row per seed (with the checkpoint folder its weights are in, and the generation
    source its variant read), its epochs and its long-format metrics, in one transaction."""
    run_rows, metric_rows, epoch_rows, checkpoint_rows = [], [], [], []
    created = now_utc()
    folders = checkpoints if checkpoints is not None else [None] * len(results)
    for result, folder in zip(results, folders, strict=True):
        run_id = f"{experiment_id}-s{result.seed}"
        run_rows.append({
            "run_id": run_id, "experiment_id": experiment_id, "model": ident.model, "kind": ident.kind,
            "dataset": ident.dataset, "variant": ident.variant, "features": ident.features,
            "ng_k": ident.ng_k, "seed": result.seed, "config": json.dumps(config, sort_keys=True),
            "data_fingerprint": fingerprint, "variant_stats": json.dumps(variant_stats, sort_keys=True),
            "eval_split": result.eval_split, "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early, "epoch_seconds": result.epoch_seconds,
            "train_samples_per_s": result.train_samples_per_s, "stop_auc": result.dev_auc,  # on stop_split
            "eval_impressions_per_s": result.eval_impressions_per_s, "processes": result.processes,
            "device": device, "created_at": created, "stop_split": result.stop_split,
            "autocast": result.autocast,
        })
        if folder is not None:
            checkpoint_rows.append({"run_id": run_id, "checkpoint": str(folder)})
        for epoch, seconds in enumerate(result.epoch_seconds):
            epoch_rows.append({
                "run_id": run_id, "epoch": epoch + 1, "seconds": seconds,
                "samples_per_s": result.train_samples_per_s[epoch],
                "data_wait_seconds": result.data_wait_seconds[epoch],
                "stop_auc": _finite(result.dev_auc[epoch]) if epoch < len(result.dev_auc) else None,
            })
        for split, groups in result.metrics.items():
            for group, values in groups.items():
                for metric, value in values.items():
                    metric_rows.append({
                        "run_id": run_id, "split": split, "user_group": group, "metric": metric,
                        "value": _finite(value),
                    })
    with store.transaction():
        store.insert_arrow("runs", pa.Table.from_pylist(run_rows, schema=_RUNS_SCHEMA))
        store.insert_arrow("run_metrics", pa.Table.from_pylist(metric_rows, schema=_METRICS_SCHEMA))
        store.insert_arrow("run_epochs", pa.Table.from_pylist(epoch_rows, schema=_EPOCHS_SCHEMA))
        store.insert_arrow("run_checkpoints", pa.Table.from_pylist(checkpoint_rows, schema=_CHECKPOINTS_SCHEMA))
        if source is not None:  # migrations 006 and 010
            source_rows = [{"run_id": r["run_id"], "llm": source.llm, "prompt_set": source.prompt_set,
                            "method": source.method} for r in run_rows]
            store.insert_arrow("run_sources", pa.Table.from_pylist(source_rows, schema=_SOURCES_SCHEMA))
    return [r["run_id"] for r in run_rows]


def _finite(value) -> float | None:
    """NaN (no qualifying impression) is stored as NULL."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


@dataclass(frozen=True)
class OriginalBaseline:
    """The stored `original` runs a variant's runs are paired with in train's t-test."""

    auc_by_seed: dict[int, float]  # seed -> AUC of the newest original run trained the same way
    # seed -> the settings its newest original run differs in, for the seeds that have original
    # runs of the same protocol but none trained with the variant's settings (not paired)
    other_settings: dict[int, list[str]]


def original_baseline(store: Store, ident: RunIdentity, eval_split: str, stop_split: str | None,
                      config: dict) -> OriginalBaseline:
    """Per seed, the AUC (all users) of the latest stored `original` run with the same
    model/data/features, reported on `eval_split` after stopping on `stop_split` (the same
    protocol) and trained with the same settings as a run of stored `config`
    (run_match.compared_settings): the baseline of the paired t-test."""
    from genre_local.run_match import compared_settings, differing_settings

    rows = store.conn.execute(
        "SELECT r.seed, m.value, r.config FROM runs r JOIN run_metrics m ON m.run_id = r.run_id "
        "WHERE r.model = ? AND r.dataset = ? AND r.features = ? AND r.variant = 'original' "
        "AND r.eval_split = ? AND r.stop_split IS NOT DISTINCT FROM ? "
        "AND m.split = ? AND m.user_group = 'all' AND m.metric = 'auc' AND m.value IS NOT NULL "
        "ORDER BY r.created_at DESC, r.run_id DESC",
        [ident.model, ident.dataset, ident.features, eval_split, stop_split, eval_split],
    ).fetchall()
    wanted = compared_settings(config, ident.model)
    auc_by_seed: dict[int, float] = {}
    other_settings: dict[int, list[str]] = {}
    for seed, value, stored in rows:  # newest first
        settings = compared_settings(json.loads(stored), ident.model)
        if settings == wanted:
            auc_by_seed.setdefault(int(seed), float(value))
        else:
            other_settings.setdefault(int(seed), differing_settings([wanted, settings]))
    return OriginalBaseline(auc_by_seed, {s: d for s, d in other_settings.items() if s not in auc_by_seed})


@dataclass(frozen=True)
class SeedMetrics:
    """A stored run's metrics as `report` counts them: on the split it reported, NULLs left out."""

    run_id: str
    seed: int
    eval_split: str
    stop_split: str | None
    metrics: dict[str, dict[str, float]]  # user group -> metric -> value
    config: dict = field(default_factory=dict)  # the run's stored config (the settings it was trained with)
    autocast: str | None = None  # "bfloat16" | "float32" (runs.autocast); None: stored before it was recorded


def load_seed_metrics(store: Store, run_ids: list[str]) -> list[SeedMetrics]:
    """The reported metrics of each run of `run_ids` (those stored), in the order given."""
    from recsys.catalog import METRICS

    rows = store.conn.execute(
        "SELECT r.run_id, r.seed, r.eval_split, r.stop_split, r.config, r.autocast, m.user_group, m.metric, m.value FROM runs r "
        "LEFT JOIN run_metrics m ON m.run_id = r.run_id AND m.split = r.eval_split AND m.value IS NOT NULL "
        "AND list_contains(?, m.metric) WHERE list_contains(?, r.run_id)",
        [list(METRICS), list(run_ids)],
    ).fetchall()
    found: dict[str, SeedMetrics] = {}
    for run_id, seed, eval_split, stop_split, config, autocast, group, metric, value in rows:
        entry = found.setdefault(run_id, SeedMetrics(run_id, int(seed), eval_split, stop_split, {},
                                                     json.loads(config), autocast))
        if group is not None:
            entry.metrics.setdefault(group, {})[metric] = float(value)
    return [found[r] for r in run_ids if r in found]


def store_id(store: Store) -> str:
    """The store's random identity (migration 004): checkpoints are kept and checked by it."""
    return str(store.conn.execute("SELECT store_id FROM store_identity").fetchone()[0])


@dataclass(frozen=True)
class StoredRun:
    """A stored run as predict and resume need it."""

    run_id: str
    ident: RunIdentity
    seed: int
    config: dict
    data_fingerprint: str
    epochs_run: int
    checkpoint: Path | None
    source: GenerationSource | None = None  # the generation source its variant read (migrations 006, 010)


_STORED_RUN_SQL = (
    "SELECT r.run_id, r.model, r.kind, r.dataset, r.variant, r.features, r.ng_k, r.seed, r.config, "
    "r.data_fingerprint, r.epochs_run, c.checkpoint, s.llm, s.prompt_set, s.method FROM runs r "
    "LEFT JOIN run_checkpoints c USING (run_id) LEFT JOIN run_sources s USING (run_id) "
)


def _stored_run(row) -> StoredRun:
    from genre_local.store.generations import GenerationSource

    (run_id, model, kind, dataset, variant, features, ng_k, seed, config, fingerprint, epochs_run, checkpoint,
     llm, prompt_set, method) = row
    return StoredRun(run_id=run_id, ident=RunIdentity(model, kind, dataset, variant, features, int(ng_k)),
                     seed=int(seed), config=json.loads(config), data_fingerprint=fingerprint,
                     epochs_run=int(epochs_run), checkpoint=None if checkpoint is None else Path(checkpoint),
                     source=None if llm is None else GenerationSource(llm, prompt_set, method))


def find_run(store: Store, run_id: str) -> StoredRun | None:
    row = store.conn.execute(_STORED_RUN_SQL + "WHERE r.run_id = ?", [run_id]).fetchone()
    return None if row is None else _stored_run(row)


def latest_run(store: Store, ident: RunIdentity, seed: int, source: GenerationSource | None = None) -> StoredRun | None:
    """The newest stored run of this model, dataset variant (from `source`, when given), features and seed."""
    sql = (_STORED_RUN_SQL + "WHERE r.model = ? AND r.dataset = ? AND r.variant = ? AND r.features = ? AND r.ng_k = ? "
           "AND r.seed = ? ")
    params: list[object] = [ident.model, ident.dataset, ident.variant, ident.features, ident.ng_k, seed]
    if source is not None:
        sql += "AND s.llm = ? AND s.prompt_set = ? AND s.method = ? "
        params += [source.llm, source.prompt_set, source.method]
    row = store.conn.execute(sql + "ORDER BY r.created_at DESC, r.run_id DESC LIMIT 1", params).fetchone()
    return None if row is None else _stored_run(row)


def run_stored_from(store: Store, checkpoint: Path, epochs_run: int, fingerprint: str) -> str | None:
    """The id of a stored run trained to `epochs_run` epochs in `checkpoint` on these rows, if any:
    a finished checkpoint that is already stored must not be stored again."""
    row = store.conn.execute(
        "SELECT r.run_id FROM runs r JOIN run_checkpoints c USING (run_id) WHERE c.checkpoint = ? "
        "AND r.epochs_run = ? AND r.data_fingerprint = ? ORDER BY r.created_at DESC LIMIT 1",
        [str(checkpoint), epochs_run, fingerprint],
    ).fetchone()
    return None if row is None else str(row[0])


def open_store_waiting(db_path: Path, wait_s: float = 120.0, poll_s: float = 3.0) -> Store:
    """Open the store for a final write, waiting a while if another command holds the lock:
    losing a finished training to a short `generate` or `report` would be a poor trade."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return open_store(db_path)
        except StoreError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(poll_s)
