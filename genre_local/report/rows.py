"""The plain rows the report is computed from, decoupled from the store's table layout.

Only `load.py` knows the SQL tables; every view is a pure function of these rows, so the views
are tested with hand-made rows and survive schema changes on the training side.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

METRICS: tuple[str, ...] = ("auc", "mrr", "ndcg@5", "ndcg@10")
METRIC_LABELS: dict[str, str] = {"auc": "AUC", "mrr": "MRR", "ndcg@5": "nDCG@5", "ndcg@10": "nDCG@10"}

# Kept here rather than imported from recsys.models, which imports torch: the report must
# start fast and run where torch is absent.
MATCHING_MODELS: tuple[str, ...] = ("naml", "lstur", "nrms", "plmnr")
RANKING_MODELS: tuple[str, ...] = ("bst", "dcn", "pnn", "din")
MODEL_ORDER: tuple[str, ...] = MATCHING_MODELS + RANKING_MODELS

VARIANT_PARTS: tuple[str, ...] = ("ns", "up", "ng", "chain")
FEATURE_ORDER: tuple[str, ...] = ("title", "abstract", "category", "subcategory", "image")


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
    model: str
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


def model_kind(model: str) -> str:
    if model in MATCHING_MODELS:
        return "matching"
    if model in RANKING_MODELS:
        return "ranking"
    return "other"


def model_sort_key(model: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER), model)


def canonical_variant(text: str) -> str:
    """'up+ns' and 'ns+up' are the same variant; spell it in the paper's order."""
    parts = {p.strip().lower() for p in text.split("+") if p.strip()}
    parts.discard("original")
    ordered = [p for p in VARIANT_PARTS if p in parts] + sorted(parts - set(VARIANT_PARTS))
    return "+".join(ordered) or "original"


def variant_sort_key(variant: str) -> tuple[int, int, str]:
    parts = variant.split("+")
    first = VARIANT_PARTS.index(parts[0]) if parts[0] in VARIANT_PARTS else len(VARIANT_PARTS)
    return (0 if variant == "original" else len(parts), first, variant)


def has_synthetic_news(variant: str) -> bool:
    return bool({"ng", "chain"} & set(variant.split("+")))


def canonical_features(text: str) -> str:
    """'category, title' -> 'title,category' (fixed order, duplicates dropped)."""
    parts = {p.strip().lower() for p in text.split(",") if p.strip()}
    ordered = [f for f in FEATURE_ORDER if f in parts] + sorted(parts - set(FEATURE_ORDER))
    return ",".join(ordered)
