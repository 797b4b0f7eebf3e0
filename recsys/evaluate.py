"""Scoring whole splits and MIND metrics per user group.

Two paths with the same results: the naive path runs the full model per impression batch;
the fast path encodes every news once (and, for matching models, every distinct user once;
for ranking models, each impression's history once per block of pairs) and scores from the
cached vectors. The tests hold them equal.
"""

from __future__ import annotations

from collections.abc import Mapping

import time
from dataclasses import dataclass

import numpy as np
import torch

from recsys.catalog import METRICS, USER_GROUPS
from recsys.data import EncodedDataset, SplitArrays, assemble, last_items, user_inputs
from recsys.metrics import mean_metrics, metrics_by_impression


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


def _user_groups(split: SplitArrays, rows: np.ndarray, history_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows that give the user encoder the same input (train-user index, profile, the last
    `history_len` history items) share one user vector: (first row of each group, group of each row).

    One np.unique over a [rows, history_len + 2] key matrix (news 0 is padding, so the padded
    history alone tells the lengths apart); int32 where the values fit, to halve it on MIND-large."""
    history, _ = last_items(split.history, split.history_offsets, rows, history_len)
    ids = (split.user_index[rows], split.profile_index[rows])
    fits = max((int(a.max()) for a in (*ids, history) if a.size), default=0) < 2**31
    key = np.empty((len(rows), history_len + 2), dtype=np.int32 if fits else np.int64)
    key[:, 0], key[:, 1], key[:, 2:] = ids[0], ids[1], history
    del history
    _, first, group = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return rows[first], group.reshape(-1)


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


# Distinct users whose vectors are held at once: memory stays flat however large the split.
_USER_BLOCK = 65_536


def _matching_fast(model, data, split, rows, history_len, batch_size, device) -> list[np.ndarray]:
    """Every news encoded once, every distinct user once (in blocks of _USER_BLOCK users); each
    impression then scores its candidates' vectors against its user's vector. The scores go into one
    flat array in row order, whatever order the blocks visit the rows in."""
    news = encode_all_news(model, data, batch_size, device)
    firsts, group = _user_groups(split, rows, history_len)
    _, counts = _flat_positions(split.candidate_offsets, rows)
    out_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    flat = np.zeros(int(out_offsets[-1]), dtype=np.float32)
    by_group = np.argsort(group, kind="stable")  # row positions, grouped by user
    bounds = np.searchsorted(group[by_group], np.arange(0, len(firsts) + _USER_BLOCK, _USER_BLOCK))
    lengths = np.minimum(split.history_offsets[firsts + 1] - split.history_offsets[firsts], history_len)
    for block, start in enumerate(range(0, len(firsts), _USER_BLOCK)):
        # Users of similar history length batched together, each batch cut to its longest history:
        # most histories are far shorter than history_len (the synthetic sets' median is 13 of 50),
        # and every user encoder ignores masked positions: the same vectors up to float rounding.
        block_firsts = firsts[start : start + _USER_BLOCK]
        by_length = np.argsort(lengths[start : start + _USER_BLOCK], kind="stable")
        user_vectors = None
        for positions in _chunks(by_length, batch_size):
            chunk = block_firsts[positions]
            width = max(1, int(lengths[start + positions].max()))
            history, hmask = last_items(split.history, split.history_offsets, chunk, width)
            user = user_inputs(data, split, chunk, hmask).to(device)
            vectors = model.encode_user(news[torch.from_numpy(history).to(device)], user)
            if user_vectors is None:
                user_vectors = vectors.new_empty((len(block_firsts), vectors.shape[1]))
            user_vectors[torch.from_numpy(positions).to(device)] = vectors
        for members in _chunks(by_group[bounds[block] : bounds[block + 1]], batch_size):
            candidates, mask = _padded_candidates(split, rows[members])
            u = user_vectors[torch.from_numpy(group[members] - start).to(device)]
            values = model.score(u, news[torch.from_numpy(candidates).to(device)]).float().cpu().numpy()
            target = out_offsets[members][:, None] + np.arange(mask.shape[1])[None, :]
            flat[target[mask]] = values[mask]
    return np.split(flat, out_offsets[1:-1]) if len(rows) else []


def _flat_positions(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in a flat per-candidate array of every candidate of `rows` (in row order) and the count per row."""
    counts = offsets[rows + 1] - offsets[rows]
    starts = np.repeat(offsets[rows] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return starts + np.arange(int(counts.sum())), counts


def _pairs(split: SplitArrays, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(impression row, candidate news) per pair and the pair count per row."""
    positions, counts = _flat_positions(split.candidate_offsets, rows)
    return np.repeat(rows, counts), split.candidates[positions].astype(np.int64), counts


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


def _ranking_fast(model, data, split, rows, history_len, batch_size, device, share_users: bool = True) -> list[np.ndarray]:
    """Every news encoded once; then the pairs, `batch_size` per forward (the memory bound: one
    [H, D] history per impression of the block, plus what the model's per-pair scoring needs;
    four times larger blocks were slower for PNN, whose per-pair [64, 64] product intermediate
    then outgrows the cache, our reading).
    Within a block each impression's history and user inputs are gathered once and its candidates
    scored through `score_pairs` (DCN, PNN: the mean history once per impression). share_users=False
    gathers them per pair and calls `score`: the path before, kept as the reference
    (tests/test_evaluate.py: the same bits; scripts/bench_ranking_eval.py: the time)."""
    news = encode_all_news(model, data, batch_size, device)
    pair_rows, pair_news, counts = _pairs(split, rows)
    out = []
    for start in range(0, len(pair_rows), batch_size):
        chunk_rows = pair_rows[start : start + batch_size]
        impressions, owner = np.unique(chunk_rows, return_inverse=True) if share_users else (chunk_rows, None)
        history, hmask = last_items(split.history, split.history_offsets, impressions, history_len)
        user = user_inputs(data, split, impressions, hmask).to(device)
        history = news[torch.from_numpy(history).to(device)]
        candidates = news[torch.from_numpy(pair_news[start : start + batch_size]).to(device)]
        if owner is None:
            scores = model.score(history, user, candidates)
        else:
            owner = torch.from_numpy(owner.reshape(-1).astype(np.int64)).to(device)
            scores = model.score_pairs(history, user, candidates, owner)
        out.append(scores.float().cpu().numpy())
    flat = np.concatenate(out) if out else np.zeros(0, np.float32)
    return _split_by_counts(flat, counts)


def group_metrics(split: SplitArrays, scored: SplitScores,
                  cohorts: Mapping[str, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """{'all'|'empty'|'new'|'warm': {auc, mrr, ndcg@5, ndcg@10, impressions}}.

    new = 1..5 history items before ng, empty = none, warm = more (recsys.catalog.user_group).
    "empty" is present only when a scored impression has no history (so a dataset without such
    users reports the paper's all/new/warm as before); a new or warm group without impressions
    has NaN metrics and 0 impressions."""
    values = scored_metrics(split, scored)
    masks = split.group_masks()
    out = {}
    for name in USER_GROUPS:
        keep = masks[name][scored.rows]
        if name == "empty" and not keep.any():
            continue
        out[name] = _reported(mean_metrics(values, keep))
    # Cohorts: named sets of impression ids (e.g. GENRE Table 7's "Chain" users), always
    # reported, NaN when none of their impressions was scored.
    for name, impression_ids in (cohorts or {}).items():
        keep = np.isin(split.impression_id[scored.rows], impression_ids)
        out[name] = _reported(mean_metrics(values, keep))
    return out


def _reported(result: dict[str, float]) -> dict[str, float]:
    return {k: float(result[k]) for k in METRICS} | {"impressions": int(result["impressions"])}


def scored_metrics(split: SplitArrays, scored: SplitScores) -> dict[str, np.ndarray]:
    """metrics_by_impression of the scored rows (in scored.rows order), computed once for all groups."""
    rows = np.asarray(scored.rows, dtype=np.int64)
    lengths = np.fromiter((len(s) for s in scored.scores), dtype=np.int64, count=len(scored.scores))
    expected = split.candidate_offsets[rows + 1] - split.candidate_offsets[rows]
    if len(lengths) != len(rows) or (lengths != expected).any():
        bad = int(np.flatnonzero(lengths != expected)[0]) if len(lengths) == len(rows) else -1
        raise ValueError(f"{len(rows)} rows but {len(lengths)} score arrays" if bad < 0 else
                         f"impression row {rows[bad]}: {lengths[bad]} scores for {expected[bad]} candidates")
    positions, counts = _flat_positions(split.candidate_offsets, rows)
    labels = split.labels[positions]
    flat = np.concatenate([np.ravel(s) for s in scored.scores]) if len(rows) else np.zeros(0, np.float32)
    return metrics_by_impression(labels, flat, np.concatenate([[0], np.cumsum(counts)]))
