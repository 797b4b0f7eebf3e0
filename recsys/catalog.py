"""The names every part of genre-local agrees on: models, metrics, user groups, news features.

Torch-free and import-cheap, so the CLI's enums, the report and the benchmarks derive their
choices from here without loading a model. Each name is defined once, in this module.
"""

from __future__ import annotations

MATCHING_MODELS: tuple[str, ...] = ("naml", "lstur", "nrms", "plmnr", "dire")
"""Models that score a user vector against news vectors (trained with cross-entropy over
one click and its sampled negatives, GENRE eq. 4)."""

RANKING_MODELS: tuple[str, ...] = ("bst", "dcn", "pnn", "din")
"""Models that score one (user, candidate) pair at a time (trained with BCE, GENRE eq. 3)."""

MODEL_NAMES: tuple[str, ...] = MATCHING_MODELS + RANKING_MODELS

METRICS: tuple[str, ...] = ("auc", "mrr", "ndcg@5", "ndcg@10")
METRIC_LABELS: dict[str, str] = {"auc": "AUC", "mrr": "MRR", "ndcg@5": "nDCG@5", "ndcg@10": "nDCG@10"}

USER_GROUPS: tuple[str, ...] = ("all", "new", "warm")
"""Metric groups: every impression, users with a short history, users with a longer one."""

NEW_USER_MAX_HISTORY = 5
"""Users with 1..5 history items are "new" (cold) users: GENRE §3.4 and Table 6."""

NEWS_FEATURES: tuple[str, ...] = ("title", "abstract", "category", "subcategory", "image")
"""News features a model may read, in the order they enter a model's token sequence."""

IMAGE_DIM = 512
"""Width of the image vectors `--image-file` supplies (GENRE's feature ablation)."""

VARIANT_PARTS: tuple[str, ...] = ("original", "ns", "up", "ng", "chain")
"""Dataset variants: the imported data, and GENRE's enrichments (combined with '+')."""


def model_kind(name: str) -> str:
    """'matching' or 'ranking'; ValueError for a name outside MODEL_NAMES."""
    if name in MATCHING_MODELS:
        return "matching"
    if name in RANKING_MODELS:
        return "ranking"
    raise ValueError(f"model {name!r} is unknown; choose one of {', '.join(MODEL_NAMES)}")
