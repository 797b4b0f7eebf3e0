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
