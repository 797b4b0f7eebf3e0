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

USER_GROUPS: tuple[str, ...] = ("all", "empty", "new", "warm")
"""Metric groups: every impression; users with no history; users with a short history (new);
users with a longer one (warm). empty, new and warm partition "all"."""

NEW_USER_MAX_HISTORY = 5
"""Users with 1..5 history items are "new" (cold) users: GENRE §3.4 and Table 6. A user with an
empty history is not "new" but in the group "empty" (no history to enrich or generate from)."""


def user_group(history_len: int) -> str:
    """'empty' (0 items), 'new' (1..NEW_USER_MAX_HISTORY) or 'warm' (more); ValueError below 0."""
    if history_len < 0:
        raise ValueError(f"a history length cannot be negative (got {history_len})")
    if history_len == 0:
        return "empty"
    return "new" if history_len <= NEW_USER_MAX_HISTORY else "warm"

NEWS_FEATURES: tuple[str, ...] = ("title", "abstract", "category", "subcategory", "image")
"""News features a model may read, in the order they enter a model's token sequence."""

IMAGE_DIM = 512
"""Width of the image vectors `--image-file` supplies (GENRE's feature ablation)."""

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw")
"""adam: GENRE's Adam with L2 weight decay (the decay is added to the gradient, torch.optim.Adam);
adamw: decoupled weight decay (torch.optim.AdamW)."""

DECAY_SCOPES: tuple[str, ...] = ("weights", "all")
"""Which parameters the weight decay reaches (recsys/optim.py): weights = weight matrices only (not
lookup tables, biases or other vectors, nor the gated fusion or LoRA adapters); all = every trainable parameter."""

FUSION_FORMS: tuple[str, ...] = ("gated", "paper")
"""How a user profile meets the user vector (recsys/layers/fusion.py): gated starts as the identity
on v_u; paper is GENRE eq. 2 as written (an MLP of [v_u; v_i] replaces v_u)."""

MODEL_SPECIFIC_FIELDS: dict[str, tuple[str, ...]] = {
    "num_heads": ("nrms", "bst", "plmnr", "dire"),  # PLMNR and DIRE: NRMS's user encoder
    "transformer_layers": ("bst", "plmnr"),
    "lora_rank": ("plmnr",),  # DIRE's LoRA recipe is fixed (recsys/models/dire.py)
    "user_mask_prob": ("lstur",),
    "encoder": ("dire",),
    "plmnr_history": ("plmnr",),
}
"""ModelConfig fields (most also [train] keys) only some models read: field -> those models. A
checkpoint's identity (recsys/train.py) and the stored-run match of grid and train (genre_local/run_match.py)
ignore such a field for the other models, so an NRMS run is not redone when lora_rank changes.
tests/test_models.py checks that each model reads exactly the fields listed for it."""


def unread_settings(model: str, profile: bool) -> set[str]:
    """The ModelConfig fields `model` does not read (MODEL_SPECIFIC_FIELDS), with interest_fusion
    when the variant has no profile: what a checkpoint's identity and the grid's stored-run match
    leave out."""
    unread = {name for name, models in MODEL_SPECIFIC_FIELDS.items() if model not in models}
    if not profile:
        unread.add("interest_fusion")
    return unread

PLMNR_HISTORY: tuple[str, ...] = ("exact", "no-grad", "cached", "states")
"""How a PLMNR training step encodes the batch's history-only news: exact (through the tuned top
layer with gradient, like candidates); no-grad (through the top layer without gradient); cached
(pooled top-layer vectors from a table of the whole catalogue, refreshed at each epoch start,
through the trainable projection); states (the top layer's token states from such a table,
through dropout, the trainable attention pooling and projection). Evaluation always encodes
every news afresh."""

VARIANT_PARTS: tuple[str, ...] = ("original", "ns", "up", "ng", "chain")
"""Dataset variants: the imported data, and GENRE's enrichments (combined with '+')."""


def model_kind(name: str) -> str:
    """'matching' or 'ranking'; ValueError for a name outside MODEL_NAMES."""
    if name in MATCHING_MODELS:
        return "matching"
    if name in RANKING_MODELS:
        return "ranking"
    raise ValueError(f"model {name!r} is unknown; choose one of {', '.join(MODEL_NAMES)}")
