"""Scoring whole splits and MIND metrics per user group.

Two paths with the same results: the naive path runs the full model per impression batch;
the fast path encodes every news once (and, for matching models, every distinct user once)
and scores from the cached vectors. The tests hold them equal.
"""

from __future__ import annotations

from collections.abc import Mapping

import time
from dataclasses import dataclass

import numpy as np
import torch

from recsys.catalog import METRICS, USER_GROUPS
from recsys.data import EncodedDataset, SplitArrays, assemble, last_items, user_inputs
from recsys.metrics import impression_metrics


@dataclass
class SplitScores:
    rows: np.ndarray  # impression rows scored, ascending
    scores: list[np.ndarray]  # per row, aligned with the impression's candidates
    seconds: float

    @property
    def impressions_per_s(self) -> float:
        return len(self.rows) / self.seconds if self.seconds > 0 else 0.0


def _padded_candidates(split: SplitArrays, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    offsets = split.candidate_offsets
    lengths = offsets[rows + 1] - offsets[rows]
    width = int(lengths.max()) if len(rows) else 0
    idx = offsets[rows][:, None] + np.arange(width)[None, :]
    mask = np.arange(width)[None, :] < lengths[:, None]
    values = np.where(mask, split.candidates[np.where(mask, idx, 0)] if len(split.candidates) else 0, 0)
    return values.astype(np.int64), mask


def _chunks(rows: np.ndarray, size: int):
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


@torch.no_grad()
def encode_all_news(model, data: EncodedDataset, batch_size: int, device) -> torch.Tensor:
    """[N+1, D] vectors of every news row (row 0 = padding news)."""
    out = []
    total = len(data.news)
    for start in range(0, total, batch_size):
        index = torch.arange(start, min(start + batch_size, total))
        out.append(model.encode_news(data.news.select(index).to(device)))
    return torch.cat(out)


def _user_groups(split: SplitArrays, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, history, profile) per row -> (first row of each group, group of each row)."""
    keys: dict[bytes, int] = {}
    group = np.empty(len(rows), dtype=np.int64)
    firsts = []
    h, off = split.history, split.history_offsets
    for i, row in enumerate(rows):
        key = (
            split.user_index[row].tobytes() + split.profile_index[row].tobytes() + h[off[row] : off[row + 1]].tobytes()
        )
        found = keys.get(key)
        if found is None:
            found = keys[key] = len(firsts)
            firsts.append(row)
        group[i] = found
    return np.asarray(firsts, dtype=np.int64), group


@torch.no_grad()
def score_split(
    model, data: EncodedDataset, split: SplitArrays, history_len: int, batch_size: int,
    rows: np.ndarray | None = None, fast: bool = True, device="cpu",
) -> SplitScores:
    """Scores of every candidate of `rows` (default: all impressions) with the model in eval mode."""
    started = time.perf_counter()
    was_training = model.training
    model.eval()
    rows = np.arange(len(split), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    try:
        if model.kind == "matching":
            scores = (_matching_fast if fast else _matching_naive)(model, data, split, rows, history_len, batch_size, device)
        else:
            scores = (_ranking_fast if fast else _ranking_naive)(model, data, split, rows, history_len, batch_size, device)
    finally:
        model.train(was_training)
    return SplitScores(rows, scores, time.perf_counter() - started)


def _unpad(values: torch.Tensor, mask: np.ndarray) -> list[np.ndarray]:
    array = values.float().cpu().numpy()
    return [array[i][mask[i]] for i in range(array.shape[0])]


def _matching_naive(model, data, split, rows, history_len, batch_size, device) -> list[np.ndarray]:
    scores: list[np.ndarray] = []
    for chunk in _chunks(rows, max(1, batch_size // 8)):
        candidates, mask = _padded_candidates(split, chunk)
        batch = assemble(data, split, chunk, candidates, torch.zeros(len(chunk)), history_len).to(device)
        vectors = model.encode_news(batch.news)
        user = model.encode_user(vectors[batch.history], batch.user)
        scores += _unpad(model.score(user, vectors[batch.candidates]), mask)
    return scores


def _matching_fast(model, data, split, rows, history_len, batch_size, device) -> list[np.ndarray]:
    news = encode_all_news(model, data, batch_size, device)
    firsts, group = _user_groups(split, rows)
    users = []
    for chunk in _chunks(firsts, batch_size):
        history, hmask = last_items(split.history, split.history_offsets, chunk, history_len)
        user = user_inputs(data, split, chunk, hmask).to(device)
        users.append(model.encode_user(news[torch.from_numpy(history).to(device)], user))
    user_vectors = torch.cat(users) if users else torch.zeros(0, news.shape[1], device=news.device)
    scores: list[np.ndarray] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        candidates, mask = _padded_candidates(split, chunk)
        u = user_vectors[torch.from_numpy(group[start : start + batch_size]).to(device)]
        scores += _unpad(model.score(u, news[torch.from_numpy(candidates).to(device)]), mask)
    return scores


def _pairs(split: SplitArrays, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(impression row, candidate news) per pair and the pair count per row."""
    offsets = split.candidate_offsets
    counts = offsets[rows + 1] - offsets[rows]
    pair_rows = np.repeat(rows, counts)
    starts = np.repeat(offsets[rows] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    pair_news = split.candidates[starts + np.arange(int(counts.sum()))].astype(np.int64)
    return pair_rows, pair_news, counts


def _split_by_counts(values: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    return np.split(values, np.cumsum(counts)[:-1]) if len(counts) else []


def _ranking_naive(model, data, split, rows, history_len, batch_size, device) -> list[np.ndarray]:
    pair_rows, pair_news, counts = _pairs(split, rows)
    out = []
    for start in range(0, len(pair_rows), batch_size):
        chunk_rows = pair_rows[start : start + batch_size]
        batch = assemble(data, split, chunk_rows, pair_news[start : start + batch_size, None],
                         torch.zeros(len(chunk_rows)), history_len).to(device)
        vectors = model.encode_news(batch.news)
        out.append(model.score(vectors[batch.history], batch.user, vectors[batch.candidates[:, 0]]).float().cpu().numpy())
    flat = np.concatenate(out) if out else np.zeros(0, np.float32)
    return _split_by_counts(flat, counts)


def _ranking_fast(model, data, split, rows, history_len, batch_size, device) -> list[np.ndarray]:
    news = encode_all_news(model, data, batch_size, device)
    pair_rows, pair_news, counts = _pairs(split, rows)
    out = []
    for start in range(0, len(pair_rows), batch_size):
        chunk_rows = pair_rows[start : start + batch_size]
        history, hmask = last_items(split.history, split.history_offsets, chunk_rows, history_len)
        user = user_inputs(data, split, chunk_rows, hmask).to(device)
        candidate = news[torch.from_numpy(pair_news[start : start + batch_size]).to(device)]
        out.append(model.score(news[torch.from_numpy(history).to(device)], user, candidate).float().cpu().numpy())
    flat = np.concatenate(out) if out else np.zeros(0, np.float32)
    return _split_by_counts(flat, counts)


def group_metrics(split: SplitArrays, scored: SplitScores,
                  cohorts: Mapping[str, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """{'all'|'empty'|'new'|'warm': {auc, mrr, ndcg@5, ndcg@10, impressions}}.

    new = 1..5 history items before ng, empty = none, warm = more (recsys.catalog.user_group).
    "empty" is present only when a scored impression has no history (so a dataset without such
    users reports the paper's all/new/warm as before); a new or warm group without impressions
    has NaN metrics and 0 impressions."""
    labels = [split.impression_labels(int(r)) for r in scored.rows]
    masks = split.group_masks()
    out = {}
    for name in USER_GROUPS:
        keep = masks[name][scored.rows]
        if name == "empty" and not keep.any():
            continue
        picked = np.flatnonzero(keep)
        result = impression_metrics([labels[i] for i in picked], [scored.scores[i] for i in picked])
        out[name] = {k: float(result[k]) for k in METRICS} | {"impressions": int(result["impressions"])}
    # Cohorts: named sets of impression ids (e.g. GENRE Table 7's "Chain" users), always
    # reported, NaN when none of their impressions was scored.
    for name, impression_ids in (cohorts or {}).items():
        picked = np.flatnonzero(np.isin(split.impression_id[scored.rows], impression_ids))
        result = impression_metrics([labels[i] for i in picked], [scored.scores[i] for i in picked])
        out[name] = {k: float(result[k]) for k in METRICS} | {"impressions": int(result["impressions"])}
    return out
