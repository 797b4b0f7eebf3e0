"""Experiments: several seeds of one (model, dataset, variant), stored runs, mean ± std and the
paired t-test against the `original` variant trained with the same seeds.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from genre_local.store.connection import now_utc
from recsys.evaluate import METRICS
from recsys.train import RunResult

GROUPS = ("all", "new", "warm")


@dataclass(frozen=True)
class RunIdentity:
    model: str
    kind: str
    dataset: str
    variant: str
    features: str
    ng_k: int


def new_experiment_id() -> str:
    return uuid.uuid4().hex[:12]


def store_runs(store, experiment_id: str, ident: RunIdentity, config: dict, fingerprint: str,
               variant_stats: dict, device: str, results: list[RunResult]) -> list[str]:
    """One runs row per seed and its long-format metrics, in one transaction."""
    run_rows, metric_rows, epoch_rows = [], [], []
    created = now_utc()
    for result in results:
        run_id = f"{experiment_id}-s{result.seed}"
        run_rows.append({
            "run_id": run_id, "experiment_id": experiment_id, "model": ident.model, "kind": ident.kind,
            "dataset": ident.dataset, "variant": ident.variant, "features": ident.features,
            "ng_k": ident.ng_k, "seed": result.seed, "config": json.dumps(config, sort_keys=True),
            "data_fingerprint": fingerprint, "variant_stats": json.dumps(variant_stats, sort_keys=True),
            "eval_split": result.eval_split, "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early, "epoch_seconds": result.epoch_seconds,
            "train_samples_per_s": result.train_samples_per_s, "dev_auc": result.dev_auc,
            "eval_impressions_per_s": result.eval_impressions_per_s, "processes": result.processes,
            "device": device, "created_at": created,
        })
        for epoch, seconds in enumerate(result.epoch_seconds):
            epoch_rows.append({
                "run_id": run_id, "epoch": epoch + 1, "seconds": seconds,
                "samples_per_s": result.train_samples_per_s[epoch],
                "data_wait_seconds": result.data_wait_seconds[epoch],
                "dev_auc": _finite(result.dev_auc[epoch]) if epoch < len(result.dev_auc) else None,
            })
        for split, groups in result.metrics.items():
            for group, values in groups.items():
                for metric, value in values.items():
                    metric_rows.append({
                        "run_id": run_id, "split": split, "user_group": group, "metric": metric,
                        "value": _finite(value),
                    })
    runs = pa.Table.from_pylist(run_rows, schema=pa.schema([
        ("run_id", pa.string()), ("experiment_id", pa.string()), ("model", pa.string()), ("kind", pa.string()),
        ("dataset", pa.string()), ("variant", pa.string()), ("features", pa.string()), ("ng_k", pa.int32()),
        ("seed", pa.int32()), ("config", pa.string()), ("data_fingerprint", pa.string()),
        ("variant_stats", pa.string()), ("eval_split", pa.string()), ("epochs_run", pa.int32()),
        ("best_epoch", pa.int32()), ("stopped_early", pa.bool_()), ("epoch_seconds", pa.list_(pa.float64())),
        ("train_samples_per_s", pa.list_(pa.float64())), ("dev_auc", pa.list_(pa.float64())),
        ("eval_impressions_per_s", pa.float64()), ("processes", pa.int32()), ("device", pa.string()),
        ("created_at", pa.timestamp("us")),
    ]))
    metrics = pa.Table.from_pylist(metric_rows, schema=pa.schema([
        ("run_id", pa.string()), ("split", pa.string()), ("user_group", pa.string()),
        ("metric", pa.string()), ("value", pa.float64()),
    ]))
    epochs = pa.Table.from_pylist(epoch_rows, schema=pa.schema([
        ("run_id", pa.string()), ("epoch", pa.int32()), ("seconds", pa.float64()), ("samples_per_s", pa.float64()),
        ("data_wait_seconds", pa.float64()), ("dev_auc", pa.float64()),
    ]))
    with store.transaction():
        store.insert_arrow("runs", runs)
        store.insert_arrow("run_metrics", metrics)
        store.insert_arrow("run_epochs", epochs)
    return [r["run_id"] for r in run_rows]


def _finite(value) -> float | None:
    """NaN (no qualifying impression) is stored as NULL."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def mean_std(results: list[RunResult]) -> dict[str, dict[str, tuple[float, float]]]:
    """group -> metric -> (mean, sample std; 0 with one seed) on each run's reported split."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for group in GROUPS:
        out[group] = {}
        for metric in METRICS:
            values = np.asarray([r.metrics[r.eval_split][group][metric] for r in results], dtype=float)
            values = values[~np.isnan(values)]
            if values.size == 0:
                out[group][metric] = (float("nan"), float("nan"))
            else:
                std = float(values.std(ddof=1)) if values.size > 1 else 0.0
                out[group][metric] = (float(values.mean()), std)
    return out


def original_auc_by_seed(conn, ident: RunIdentity, eval_split: str) -> dict[int, float]:
    """AUC (all users) of the latest stored `original` run per seed with the same model/data/features."""
    rows = conn.execute(
        "SELECT r.seed, m.value FROM runs r JOIN run_metrics m ON m.run_id = r.run_id "
        "WHERE r.model = ? AND r.dataset = ? AND r.features = ? AND r.variant = 'original' "
        "AND m.split = ? AND m.user_group = 'all' AND m.metric = 'auc' AND m.value IS NOT NULL "
        "QUALIFY row_number() OVER (PARTITION BY r.seed ORDER BY r.created_at DESC, r.run_id DESC) = 1",
        [ident.model, ident.dataset, ident.features, eval_split],
    ).fetchall()
    return {int(seed): float(value) for seed, value in rows}


def paired_p_value(results: list[RunResult], baseline: dict[int, float]) -> float | None:
    """scipy.stats.ttest_rel on AUC over the seeds both sides have; None with fewer than 2 pairs."""
    from scipy.stats import ttest_rel

    pairs = [
        (r.metrics[r.eval_split]["all"]["auc"], baseline[r.seed]) for r in results if r.seed in baseline
    ]
    pairs = [(a, b) for a, b in pairs if not (math.isnan(a) or math.isnan(b))]
    if len(pairs) < 2:
        return None
    ours, theirs = (np.asarray(x, dtype=float) for x in zip(*pairs, strict=True))
    if np.allclose(ours - theirs, (ours - theirs)[0]):  # constant differences: t is undefined
        return 1.0 if np.allclose(ours, theirs) else 0.0
    return float(ttest_rel(ours, theirs).pvalue)
