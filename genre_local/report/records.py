"""Views flattened to CSV: one header, one row per (model, metric, ...), numbers unrounded."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from genre_local.report.rows import FidelityRow, model_kind
from genre_local.report.views import (
    AblationRow,
    ChainRow,
    Comparison,
    CostRow,
    CurvePoint,
    Summary,
    VariantTable,
)


@dataclass(frozen=True)
class Records:
    header: tuple[str, ...]
    rows: list[tuple[object, ...]]


def write_csv(path: Path, records: Records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(records.header)
        for row in records.rows:
            writer.writerow(["" if v is None else v for v in row])
    return path


def _seeds(summary: Summary | None) -> str | None:
    return None if summary is None else " ".join(str(s) for s in sorted(summary.values))


def _stats(summary: Summary | None) -> tuple[object, object, object]:
    if summary is None:
        return (None, None, None)
    return (summary.mean, summary.std, _seeds(summary))


COMPARISON_HEADER = (
    "model", "kind", "variant", "ng_k", "features", "group", "metric",
    "original_mean", "original_std", "original_seeds", "variant_mean", "variant_std", "variant_seeds",
    "improvement", "improvement_pct", "p_value",
)


def _comparison_row(c: Comparison) -> tuple[object, ...]:
    return (
        c.model, c.kind, c.other_key.variant, c.other_key.ng_k, c.other_key.features, c.group, c.metric,
        *_stats(c.base), *_stats(c.other), c.improvement, c.improvement_pct, c.p_value,
    )


def variant_records(tables: list[VariantTable]) -> Records:
    return Records(COMPARISON_HEADER, [_comparison_row(c) for t in tables for c in t.comparisons])


def group_records(comparisons: list[Comparison]) -> Records:
    return Records(COMPARISON_HEADER, [_comparison_row(c) for c in comparisons])


def curve_records(points: list[CurvePoint]) -> Records:
    return Records(
        ("model", "kind", "ng_k", "source", "metric", "mean", "std", "seeds"),
        [(p.model, model_kind(p.model), p.ng_k, p.source, p.metric, *_stats(p.summary)) for p in points],
    )


def chain_records(rows: list[ChainRow]) -> Records:
    return Records(
        ("model", "kind", "metric", "original_mean", "original_std", "original_seeds",
         "one_pass_mean", "one_pass_std", "one_pass_seeds", "chain_mean", "chain_std", "chain_seeds",
         "one_pass_improvement", "chain_improvement", "chain_vs_one_pass_p"),
        [(r.model, model_kind(r.model), r.metric, *_stats(r.original), *_stats(r.one_pass), *_stats(r.chain),
          r.one_pass_improvement, r.chain_improvement, r.chain_vs_one_pass_p) for r in rows],
    )


def ablation_records(rows: list[AblationRow]) -> Records:
    return Records(
        ("model", "kind", "variant", "features", "metric", "mean", "std", "seeds"),
        [(r.model, model_kind(r.model), r.variant, r.features, r.metric, *_stats(r.summary)) for r in rows],
    )


def cost_records(rows: list[CostRow]) -> Records:
    return Records(
        ("scheme", "tasks", "variant", "runs", "llm", "requests", "valid", "invalid", "prompt_tokens",
         "completion_tokens", "engine_seconds", "wall_seconds", "cost", "cost_unit", "cost_units",
         "matching_auc_improvement", "matching_models", "matching_ccr",
         "ranking_auc_improvement", "ranking_models", "ranking_ccr"),
        [(r.scheme, "+".join(r.tasks), r.variant, r.runs, " ".join(r.models), r.requests, r.valid, r.invalid,
          r.prompt_tokens, r.completion_tokens, r.engine_seconds, r.wall_seconds, r.money, r.unit, r.cost_units,
          r.matching_improvement, r.matching_models, r.matching_ccr,
          r.ranking_improvement, r.ranking_models, r.ranking_ccr) for r in rows],
    )


def fidelity_records(rows: list[FidelityRow]) -> Records:
    return Records(
        ("run_id", "model", "round", "precision_at_3", "recall", "region_accuracy", "users", "created_at"),
        [(r.run_id, r.model, r.round, r.precision_at_3, r.recall, r.region_accuracy, r.users, r.created_at)
         for r in rows],
    )
