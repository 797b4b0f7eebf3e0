"""MIND ranking metrics per impression (issue 4 §5), pure numpy.

Conventions, shared by training, evaluation, tests and reports:
- ranks come from a stable sort on -score, so tied scores keep candidate order;
- AUC counts a tied (positive, negative) pair as half a correct pair;
- impressions without a click are skipped for every metric; impressions where every candidate
  is clicked have no AUC (no negative) but still count for MRR and nDCG.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys.catalog import METRICS


def _ranking(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Labels reordered by descending score, ties kept in candidate order."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return np.asarray(labels, dtype=np.float64)[order]


def auc_score(labels: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a random clicked item outscores a random unclicked one (ties = 1/2).

    Counted directly over all (positive, negative) pairs; impressions are at most a few hundred
    candidates, so the pair matrix stays small. Returns nan without a positive or a negative.
    """
    y = np.asarray(labels) > 0
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def mrr_score(labels: np.ndarray, scores: np.ndarray) -> float:
    """Σ_i y_i / rank_i over the ranking, divided by Σ y_i (nan without a click)."""
    ranked = _ranking(labels, scores)
    total = ranked.sum()
    if total <= 0:
        return float("nan")
    return float((ranked / np.arange(1, ranked.size + 1)).sum() / total)


def dcg_score(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Σ over the top k of (2^y - 1) / log2(rank + 1)."""
    ranked = _ranking(labels, scores)[:k]
    return float(((2.0**ranked - 1.0) / np.log2(np.arange(2, ranked.size + 2))).sum())


def ndcg_score(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """DCG@k of the model's ranking over DCG@k of the ideal ranking (nan without a click)."""
    ideal = dcg_score(labels, labels, k)
    if ideal <= 0:
        return float("nan")
    return dcg_score(labels, scores, k) / ideal


def impression_metrics(labels: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean AUC, MRR, nDCG@5, nDCG@10 over impressions, plus the impression counts used.

    Keys: auc, mrr, ndcg@5, ndcg@10 (nan when no impression qualifies), impressions (used for
    MRR/nDCG: at least one click), auc_impressions (used for AUC: at least one click and one non-click).
    """
    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} label arrays but {len(scores)} score arrays")
    sums = dict.fromkeys(METRICS, 0.0)
    used = auc_used = 0
    for index, (y, s) in enumerate(zip(labels, scores, strict=True)):
        y = np.asarray(y)
        s = np.asarray(s)
        if y.shape != s.shape or y.ndim != 1:
            raise ValueError(f"impression {index}: labels shape {y.shape} != scores shape {s.shape} (want equal 1-d)")
        if not (y > 0).any():
            continue
        used += 1
        sums["mrr"] += mrr_score(y, s)
        sums["ndcg@5"] += ndcg_score(y, s, 5)
        sums["ndcg@10"] += ndcg_score(y, s, 10)
        if not (y > 0).all():
            auc_used += 1
            sums["auc"] += auc_score(y, s)
    result = {
        "auc": sums["auc"] / auc_used if auc_used else float("nan"),
        "mrr": sums["mrr"] / used if used else float("nan"),
        "ndcg@5": sums["ndcg@5"] / used if used else float("nan"),
        "ndcg@10": sums["ndcg@10"] / used if used else float("nan"),
    }
    return {**result, "impressions": used, "auc_impressions": auc_used}


# -- the same metrics for many impressions at once ------------------------------------------------
#
# Evaluation scores hundreds of thousands of impressions (MIND-large dev: 660k); a Python loop of
# the functions above took about half a millisecond per impression here. The functions below compute the very same
# per-impression values with whole-array numpy, one block of equal-length impressions at a time
# (no padding, so sorting and tie-breaking are exactly the 1-d functions'), and the mean sums them
# in impression order like impression_metrics does, so the results are equal to the last bit
# (tests/test_metrics.py holds them so).

_BLOCK_ELEMENTS = 1 << 21  # pair-matrix cells per block: about 16 MiB of float64 temporaries


def _block_values(y: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row metrics of [n, L] labels and scores (float64), rows as the 1-d functions see them."""
    length = y.shape[1]
    ranked = np.take_along_axis(y, np.argsort(-s, axis=1, kind="stable"), axis=1)
    ideal = np.take_along_axis(y, np.argsort(-y, axis=1, kind="stable"), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = ranked.sum(axis=1)
        out = {"mrr": np.where(total > 0, (ranked / np.arange(1, length + 1)).sum(axis=1) / total, np.nan)}
        for k in (5, 10):
            discount = np.log2(np.arange(2, min(k, length) + 2))
            dcg = ((2.0 ** ranked[:, :k] - 1.0) / discount).sum(axis=1)
            best = ((2.0 ** ideal[:, :k] - 1.0) / discount).sum(axis=1)
            out[f"ndcg@{k}"] = np.where(best > 0, dcg / best, np.nan)
        positive = y > 0
        pairs = positive[:, :, None] & ~positive[:, None, :]  # (clicked i, unclicked j)
        diff = s[:, :, None] - s[:, None, :]
        wins = ((diff > 0) & pairs).sum(axis=(1, 2))
        ties = ((diff == 0) & pairs).sum(axis=(1, 2))
        n_pos = positive.sum(axis=1)
        out["auc"] = (wins + 0.5 * ties) / (n_pos * (length - n_pos))
    return out


def metrics_by_impression(labels: np.ndarray, scores: np.ndarray, offsets: np.ndarray) -> dict[str, np.ndarray]:
    """Per-impression auc, mrr, ndcg@5, ndcg@10 (float64 [M]) of flat labels and scores, impression i
    being [offsets[i], offsets[i+1]); plus the masks `clicked` (counts for MRR/nDCG) and `auc_used`
    (a click and a non-click). A value is that of auc_score/mrr_score/ndcg_score where its mask holds."""
    offsets = np.asarray(offsets, dtype=np.int64)
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    if labels.shape != scores.shape or labels.ndim != 1 or offsets.ndim != 1 or offsets[-1] != labels.size:
        raise ValueError(f"labels {labels.shape}, scores {scores.shape} and offsets ending at {offsets[-1]} "
                         "do not describe the same flat impressions")
    count = len(offsets) - 1
    lengths = np.diff(offsets)
    if (lengths < 0).any():
        raise ValueError("offsets must not decrease")
    out = {name: np.full(count, np.nan) for name in METRICS}
    for length in np.unique(lengths[lengths > 0]).tolist():
        members = np.flatnonzero(lengths == length)
        per_block = max(1, _BLOCK_ELEMENTS // (length * length))
        for start in range(0, len(members), per_block):
            rows = members[start : start + per_block]
            cells = offsets[rows][:, None] + np.arange(length)[None, :]
            values = _block_values(labels[cells].astype(np.float64), scores[cells].astype(np.float64))
            for name in METRICS:
                out[name][rows] = values[name]
    running = np.concatenate([[0], np.cumsum(labels > 0)])
    clicks = running[offsets[1:]] - running[offsets[:-1]]
    return {**out, "clicked": clicks > 0, "auc_used": (clicks > 0) & (clicks < lengths)}


def mean_metrics(values: dict[str, np.ndarray], keep: np.ndarray | None = None) -> dict[str, float]:
    """impression_metrics' result from metrics_by_impression's values, over the impressions `keep`
    (a boolean mask or indices, default all). The means add in impression order, as that loop does."""
    picked = np.arange(len(values["clicked"])) if keep is None else np.asarray(keep)
    if picked.dtype == bool:
        picked = np.flatnonzero(picked)
    clicked = picked[values["clicked"][picked]]
    auc_used = picked[values["auc_used"][picked]]

    def mean(array: np.ndarray) -> float:
        # cumsum adds one value at a time from 0.0, exactly like `+=` in a loop
        return float(np.cumsum(array)[-1] / len(array)) if len(array) else float("nan")

    result = {"auc": mean(values["auc"][auc_used])}
    result |= {name: mean(values[name][clicked]) for name in METRICS if name != "auc"}
    return {**result, "impressions": len(clicked), "auc_impressions": len(auc_used)}
