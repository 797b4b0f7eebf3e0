"""Tensorized dataset variants, the disk cache, and streamed training batches.

A dataset variant is encoded once into flat arrays (news features plus ragged impression
arrays: history, candidates, labels as flat vectors with offsets) and cached under the cache
folder, keyed by a content hash. Training samples are *indices* into those arrays; batches
are assembled vectorized per batch, so nothing per-(impression, negative) is materialized and
memory stays proportional to the data, not to the number of combinations.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from recsys import features as feats
from recsys.catalog import NEW_USER_MAX_HISTORY
from recsys.inputs import TENSOR_FIELDS, NewsInputs, NewsTexts, UserInputs
from recsys.variants import ProfileVocabulary, VariantRows, VariantSpec

if TYPE_CHECKING:
    import pyarrow as pa

CACHE_FORMAT = 5  # 3: profile vocabularies travel in the file; 4: the dataset-local word vocabulary;
# 5: the news' raw strings (NewsInputs.texts) for DIRE's prompts
MAX_REGIONS = 8


@dataclass
class SplitArrays:
    """One split's impressions as flat arrays (row i = i-th impression in impression_id order)."""

    impression_id: np.ndarray  # int64 [M]
    user_index: np.ndarray  # int64 [M] into the train-user vocabulary, 0 = unseen in train
    profile_index: np.ndarray  # int64 [M] into ProfileTable rows, 0 = no profile
    history: np.ndarray  # int32 flat news indices, oldest first (ng news appended last)
    history_offsets: np.ndarray  # int64 [M+1]
    original_history_len: np.ndarray  # int64 [M]: length before ng (decides new vs warm)
    candidates: np.ndarray  # int32 flat news indices (int32 halves memory on MIND-large)
    candidate_offsets: np.ndarray  # int64 [M+1]
    labels: np.ndarray  # int8 flat, -1 where unlabeled

    def __len__(self) -> int:
        return int(self.impression_id.shape[0])

    @property
    def labeled(self) -> bool:
        return len(self) > 0 and bool((self.labels >= 0).all())

    def impression_labels(self, row: int) -> np.ndarray:
        return self.labels[self.candidate_offsets[row] : self.candidate_offsets[row + 1]]

    def impression_candidates(self, row: int) -> np.ndarray:
        return self.candidates[self.candidate_offsets[row] : self.candidate_offsets[row + 1]]

    def is_new_user(self) -> np.ndarray:
        """1..NEW_USER_MAX_HISTORY items before ng (an empty history is its own group)."""
        return (self.original_history_len >= 1) & (self.original_history_len <= NEW_USER_MAX_HISTORY)

    def is_empty_user(self) -> np.ndarray:
        return self.original_history_len == 0

    def group_masks(self) -> dict[str, np.ndarray]:
        """USER_GROUPS name -> which impressions belong to it (empty/new/warm partition all)."""
        new, empty = self.is_new_user(), self.is_empty_user()
        return {"all": np.ones(len(self), bool), "empty": empty, "new": new, "warm": ~(new | empty)}


@dataclass
class ProfileTable:
    """Row 0 = no profile; topics/regions are 1-based ids into the dataset's ProfileVocabulary."""

    topics: torch.Tensor  # [P, T]
    topics_mask: torch.Tensor
    regions: torch.Tensor  # [P, R]
    regions_mask: torch.Tensor
    has_profile: torch.Tensor  # [P]


@dataclass
class EncodedDataset:
    dataset: str
    variant: str
    fingerprint: str
    news: NewsInputs  # row 0 = padding news
    news_ids: list[str]  # news_ids[i] is the nid of row i + 1
    num_categories: int
    num_subcategories: int
    num_users: int  # train users + 1
    vocab_size: int
    profiles: ProfileTable | None
    splits: dict[str, SplitArrays]
    stats: dict[str, int] = field(default_factory=dict)
    vocabulary: ProfileVocabulary = field(default_factory=ProfileVocabulary)
    # The WordPiece ids the dataset's texts use (sorted, no padding 0): models learn an embedding
    # row for these only (recsys/vocab.py). News tensors keep the original MiniLM ids, which
    # PLMNR/DIRE feed to MiniLM as they are. Empty = every id of the tokenizer.
    word_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def split(self, name: str) -> SplitArrays:
        if name not in self.splits:
            raise KeyError(name)
        return self.splits[name]


# -- encoding --------------------------------------------------------------------------------


def _index_of(values: pa.Array, universe: pa.Array) -> np.ndarray:
    """1-based positions of `values` in `universe` (0 where absent), vectorized in Arrow."""
    import pyarrow.compute as pc

    found = pc.index_in(values, value_set=universe)
    return pc.fill_null(pc.add(found, 1), 0).to_numpy(zero_copy_only=False).astype(np.int32)


def _profile_table(profiles: dict[str, tuple[list[str], list[str]]],
                   vocabulary: ProfileVocabulary) -> tuple[ProfileTable, dict[str, int]]:
    topic_id = {t: i + 1 for i, t in enumerate(vocabulary.topics)}
    region_id = {r.lower(): i + 1 for i, r in enumerate(vocabulary.regions)}
    users = sorted(profiles)
    t_len, r_len = max(1, len(vocabulary.topics)), MAX_REGIONS
    topics = torch.zeros(len(users) + 1, t_len, dtype=torch.long)
    regions = torch.zeros(len(users) + 1, r_len, dtype=torch.long)
    for row, user in enumerate(users, start=1):
        t_ids = list(dict.fromkeys(topic_id[t] for t in profiles[user][0] if t in topic_id))[:t_len]
        r_ids = list(dict.fromkeys(region_id[r.lower()] for r in profiles[user][1] if r.lower() in region_id))[:r_len]
        topics[row, : len(t_ids)] = torch.tensor(t_ids, dtype=torch.long)
        regions[row, : len(r_ids)] = torch.tensor(r_ids, dtype=torch.long)
    has = torch.zeros(len(users) + 1, dtype=torch.bool)
    has[1:] = True
    table = ProfileTable(topics, topics != 0, regions, regions != 0, has)
    return table, {u: i + 1 for i, u in enumerate(users)}


def encode_variant(
    rows: VariantRows,
    features: tuple[str, ...],
    title_len: int,
    abstract_len: int,
    image_file: Path | None,
    fingerprint: str = "",
    tokenizer=None,
) -> EncodedDataset:
    # pyarrow only here: training from an EncodedDataset built in memory (recsys/synthetic.py)
    # must work where only torch and numpy are installed (scripts/gpu_check.sh).
    import pyarrow as pa
    import pyarrow.compute as pc

    tokenizer = tokenizer or feats.load_tokenizer()
    news, categories, subcategories = feats.tensorize_news(
        rows.news, features, title_len, abstract_len, image_file, tokenizer
    )
    universe = pa.array(rows.news.nids, pa.string())
    table = rows.impressions
    # Distinct and sorted in Arrow: a Python set of MIND-large's train user ids costs ~GiB.
    # (UTF-8 byte order is code point order, so this is Python's sorted().)
    train_ids = pc.unique(table.filter(pc.equal(table["split"], "train"))["user_id"].combine_chunks())
    user_universe = train_ids.take(pc.sort_indices(train_ids)).cast(pa.string())
    train_users = user_universe
    profiles, profile_row = (None, {})
    if rows.spec.up:
        profiles, profile_row = _profile_table(rows.profiles, rows.vocabulary)
    splits: dict[str, SplitArrays] = {}
    for split in sorted(set(table["split"].to_pylist())):
        part = table.filter(pc.equal(table["split"], split))
        history_col = part["history"].combine_chunks()
        candidate_col = part["candidates"].combine_chunks()
        label_col = part["labels"].combine_chunks()
        history = _index_of(history_col.flatten(), universe)
        history_offsets = history_col.offsets.to_numpy().astype(np.int64)
        history_offsets = history_offsets - history_offsets[0]
        # News missing from the news table cannot be encoded: drop them from histories.
        history, history_offsets = _drop_zeros(history, history_offsets)
        labels = pc.fill_null(label_col.flatten(), -1).to_numpy(zero_copy_only=False).astype(np.int8)
        cand_offsets = candidate_col.offsets.to_numpy().astype(np.int64)
        users = part["user_id"]
        splits[split] = SplitArrays(
            impression_id=part["impression_id"].to_numpy().astype(np.int64),
            user_index=_index_of(users.combine_chunks(), user_universe).astype(np.int64),
            profile_index=_profile_index(users, profile_row),
            history=history,
            history_offsets=history_offsets,
            original_history_len=part["original_history_len"].to_numpy().astype(np.int64),
            candidates=_index_of(candidate_col.flatten(), universe),
            candidate_offsets=cand_offsets - cand_offsets[0],
            labels=labels,
        )
    return EncodedDataset(
        dataset=rows.dataset,
        variant=rows.spec.name,
        fingerprint=fingerprint,
        news=news,
        news_ids=list(rows.news.nids),
        num_categories=len(categories),
        num_subcategories=len(subcategories),
        num_users=len(train_users) + 1,
        vocab_size=int(tokenizer.vocab_size),
        profiles=profiles,
        splits=splits,
        stats=dict(rows.stats),
        vocabulary=rows.vocabulary,
        word_ids=used_word_ids(news),
    )


def _profile_index(users: pa.ChunkedArray, profile_row: dict[str, int]) -> np.ndarray:
    """Each impression's ProfileTable row (0 = no profile); no per-user Python work without profiles."""
    if not profile_row:
        return np.zeros(len(users), dtype=np.int64)
    return np.asarray([profile_row.get(u, 0) for u in users.to_pylist()], dtype=np.int64)


def used_word_ids(news: NewsInputs) -> np.ndarray:
    """Sorted distinct token ids of the news texts (title and abstract), padding 0 left out."""
    parts = [t.numpy().ravel() for t in (news.title, news.abstract) if t is not None]
    ids = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
    return ids[ids != 0].astype(np.int64)


def segment_counts(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Number of True flags in each segment [offsets[i], offsets[i+1]) (empty segments give 0)."""
    running = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])
    return running[offsets[1:]] - running[offsets[:-1]]


def _drop_zeros(values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = values != 0
    if keep.all():
        return values, offsets
    counts = segment_counts(keep, offsets)
    return values[keep], np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def safe_name(text: str) -> str:
    """A dataset name as a file-name part (names are free text in the store): no separators, and
    no leading dot, so it is never `.`, `..` or a hidden file's name."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text)[:80] or "_"
    return "_" + name[1:] if name.startswith(".") else name


@dataclass(frozen=True)
class EncodingOptions:
    """How news become tensors: which features, how many tokens, where image vectors come from."""

    features: tuple[str, ...]
    title_len: int
    abstract_len: int
    image_file: Path | None = None


def cache_key(fingerprint: str, options: EncodingOptions, vocabulary: ProfileVocabulary) -> str:
    features = options.features
    payload = {
        "format": CACHE_FORMAT,
        "store": fingerprint,
        "features": sorted(features),
        "title_len": options.title_len,
        "abstract_len": options.abstract_len,
        "image": feats.file_fingerprint(Path(options.image_file)) if options.image_file and "image" in features else None,
        "tokenizer": feats.tokenizer_fingerprint(),
        "vocabulary": [list(vocabulary.topics), list(vocabulary.regions)],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def cache_file(cache_dir: Path, dataset: str, spec: VariantSpec, fingerprint: str, options: EncodingOptions,
               vocabulary: ProfileVocabulary) -> Path:
    """Where the encoded variant of these rows (named by `fingerprint`) is cached."""
    key = cache_key(fingerprint, options, vocabulary)
    return Path(cache_dir) / f"{safe_name(dataset)}-{spec.name.replace('+', '_')}-{key}.pt"


def save_encoded(data: EncodedDataset, path: Path) -> None:
    """Atomic write (temp file + rename) so a concurrent reader never sees half a cache file."""
    payload = {
        "meta": {
            "dataset": data.dataset, "variant": data.variant, "fingerprint": data.fingerprint,
            "news_ids": data.news_ids, "num_categories": data.num_categories,
            "num_subcategories": data.num_subcategories, "num_users": data.num_users,
            "vocab_size": data.vocab_size, "stats": data.stats,
            "vocabulary": [list(data.vocabulary.topics), list(data.vocabulary.regions)],
        },
        "word_ids": torch.from_numpy(np.ascontiguousarray(data.word_ids)),
        "news": {name: getattr(data.news, name) for name in TENSOR_FIELDS},
        "news_texts": None if data.news.texts is None else data.news.texts.to_lists(),
        "profiles": None if data.profiles is None else {f.name: getattr(data.profiles, f.name) for f in fields(ProfileTable)},
        "splits": {
            name: {f.name: torch.from_numpy(np.ascontiguousarray(getattr(s, f.name))) for f in fields(SplitArrays)}
            for name, s in data.splits.items()
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_encoded(path: Path) -> EncodedDataset:
    """The cached variant, its arrays memory-mapped from the file (copy-on-write): on
    MIND-large the impression arrays are GiBs the page cache can hold and drop, not the heap."""
    payload = torch.load(path, weights_only=True, mmap=True)
    meta = payload["meta"]
    profiles = None if payload["profiles"] is None else ProfileTable(**payload["profiles"])
    splits = {
        name: SplitArrays(**{k: v.numpy() for k, v in arrays.items()}) for name, arrays in payload["splits"].items()
    }
    return EncodedDataset(
        dataset=meta["dataset"], variant=meta["variant"], fingerprint=meta["fingerprint"],
        news=_news_from_payload(payload), news_ids=list(meta["news_ids"]),
        num_categories=meta["num_categories"], num_subcategories=meta["num_subcategories"],
        num_users=meta["num_users"], vocab_size=meta["vocab_size"], profiles=profiles,
        splits=splits, stats=dict(meta["stats"]),
        vocabulary=ProfileVocabulary(*(tuple(v) for v in meta["vocabulary"])),
        word_ids=payload["word_ids"].numpy(),
    )


def _news_from_payload(payload: dict) -> NewsInputs:
    news = NewsInputs(**payload["news"])
    texts = payload.get("news_texts")
    news.texts = None if texts is None else NewsTexts.of(**texts)
    return news


@dataclass
class EncodingPlan:
    """A variant to encode: its rows' fingerprint, its cache file, and, on a cache miss, the rows.

    The application makes it with its storage open and calls `build` after closing it, so
    tokenization never holds a database lock."""

    fingerprint: str
    path: Path | None
    rows: VariantRows | None
    options: EncodingOptions

    def build(self) -> tuple[EncodedDataset, Path | None]:
        if self.rows is None:
            assert self.path is not None
            return load_encoded(self.path), self.path
        o = self.options
        data = encode_variant(self.rows, o.features, o.title_len, o.abstract_len, o.image_file, self.fingerprint)
        if self.path is not None:
            save_encoded(data, self.path)
        return data, self.path


# -- batches ---------------------------------------------------------------------------------


@dataclass
class Batch:
    """A training/eval batch: the unique news it touches and positions into them.

    news row 0 is always the padding news, so padded history slots point at position 0.
    history: [B, H] positions into `news` (right-aligned, most recent last)
    candidates: [B, C] positions into `news` (matching: clicked first, then K unclicked)
    targets: matching [B] long (index of the clicked candidate, always 0); ranking [B] float
    """

    news: NewsInputs
    history: torch.Tensor
    candidates: torch.Tensor
    user: UserInputs
    targets: torch.Tensor

    def to(self, device) -> Batch:
        return Batch(self.news.to(device), self.history.to(device), self.candidates.to(device),
                     self.user.to(device), self.targets.to(device))

    def __len__(self) -> int:
        return int(self.history.shape[0])


def last_items(flat: np.ndarray, offsets: np.ndarray, rows: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The last `length` items of each row, right-aligned: (values [B, L], mask [B, L])."""
    starts, ends = offsets[rows], offsets[rows + 1]
    idx = ends[:, None] - length + np.arange(length)[None, :]
    mask = idx >= starts[:, None]
    values = np.where(mask, flat[np.where(mask, idx, 0)] if len(flat) else 0, 0)
    return values.astype(np.int64), mask


def user_inputs(data: EncodedDataset, split: SplitArrays, rows: np.ndarray, history_mask: np.ndarray) -> UserInputs:
    user = UserInputs(
        history_mask=torch.from_numpy(history_mask),
        user_index=torch.from_numpy(split.user_index[rows]),
    )
    if data.profiles is not None:
        p = torch.from_numpy(split.profile_index[rows])
        user.topics = data.profiles.topics[p]
        user.topics_mask = data.profiles.topics_mask[p]
        user.regions = data.profiles.regions[p]
        user.regions_mask = data.profiles.regions_mask[p]
        user.has_profile = data.profiles.has_profile[p]
    return user


def assemble(data: EncodedDataset, split: SplitArrays, rows: np.ndarray, candidates: np.ndarray,
             targets: torch.Tensor, history_len: int) -> Batch:
    """Batch from impression rows and [B, C] global candidate news indices."""
    history, mask = last_items(split.history, split.history_offsets, rows, history_len)
    unique, inverse = np.unique(np.concatenate([[0], history.ravel(), candidates.ravel()]), return_inverse=True)
    inverse = inverse[1:]
    h_pos = inverse[: history.size].reshape(history.shape)
    c_pos = inverse[history.size :].reshape(candidates.shape)
    return Batch(
        news=data.news.select(torch.from_numpy(unique)),
        history=torch.from_numpy(h_pos.astype(np.int64)),
        candidates=torch.from_numpy(c_pos.astype(np.int64)),
        user=user_inputs(data, split, rows, mask),
        targets=targets,
    )


def _mix(*parts: np.ndarray | int) -> np.ndarray:
    """SplitMix64 over combined integers: a per-sample random stream independent of batching."""
    with np.errstate(over="ignore"):
        x = np.zeros(1, dtype=np.uint64)
        for part in parts:
            x = (x ^ np.asarray(part, dtype=np.uint64)) + np.uint64(0x9E3779B97F4A7C15)
            x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            x = x ^ (x >> np.uint64(31))
    return x


def sample_negatives(draws: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[B, K] indices into each row's `counts` unclicked candidates: K distinct ones when the
    impression has at least K (Floyd's algorithm, vectorized over rows), else with replacement."""
    rows, k = draws.shape
    with_replacement = (draws % np.maximum(counts, 1).astype(np.uint64)[:, None]).astype(np.int64)
    distinct = np.empty((rows, k), dtype=np.int64)
    for i in range(k):
        top = counts.astype(np.int64) - k + i  # choose from 0..top; `top` itself is never taken yet
        t = (draws[:, i] % np.maximum(top + 1, 1).astype(np.uint64)).astype(np.int64)
        taken = (distinct[:, :i] == t[:, None]).any(axis=1) if i else np.zeros(rows, dtype=bool)
        distinct[:, i] = np.where(taken, top, t)
    return np.where((counts >= k)[:, None], distinct, with_replacement)


class TrainSamples:
    """The samples of one training epoch as indices, never as materialized combinations.

    matching: one sample per clicked candidate -> that click + K unclicked candidates of the same
        impression, distinct when it has K or more, with replacement when fewer (GENRE eq. 4); clicks of
        impressions without any unclicked candidate are left out
    ranking: one sample per labeled candidate -> a (user, candidate) pair with its label (eq. 3)
    """

    def __init__(self, data: EncodedDataset, split: SplitArrays, kind: str, negatives: int, history_len: int):
        self.data, self.split, self.kind = data, split, kind
        self.negatives, self.history_len = negatives, history_len
        labels = split.labels
        offsets = split.candidate_offsets
        self.neg_count = segment_counts(labels == 0, offsets)
        # flat positions of unclicked candidates, grouped by impression
        self.neg_positions = np.flatnonzero(labels == 0)
        self.neg_offsets = np.concatenate([[0], np.cumsum(self.neg_count)]).astype(np.int64)
        positions = np.flatnonzero(labels > 0 if kind == "matching" else labels >= 0)
        rows_of = np.searchsorted(offsets, positions, side="right") - 1
        if kind == "matching":  # a click with nothing unclicked beside it has nothing to contrast
            keep = self.neg_count[rows_of] > 0
            positions, rows_of = positions[keep], rows_of[keep]
        # int32 where it fits: one entry per labeled candidate is the largest array on MIND-large
        small = np.int32 if len(labels) < 2**31 else np.int64
        self.positions = positions.astype(small)
        self.rows_of = rows_of.astype(small)

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def batch(self, sample_ids: np.ndarray, seed: int, epoch: int) -> Batch:
        positions = self.positions[sample_ids]
        rows = self.rows_of[sample_ids]
        split = self.split
        if self.kind == "ranking":
            candidates = split.candidates[positions][:, None]
            targets = torch.from_numpy(split.labels[positions].astype(np.float32))
            return assemble(self.data, split, rows, candidates, targets, self.history_len)
        counts = self.neg_count[rows]
        pick = sample_negatives(_mix(seed, epoch, sample_ids[:, None], np.arange(self.negatives)[None, :]), counts)
        neg_flat = self.neg_offsets[rows][:, None] + pick
        negatives = split.candidates[self.neg_positions[neg_flat]]
        candidates = np.concatenate([split.candidates[positions][:, None], negatives], axis=1)
        targets = torch.zeros(len(rows), dtype=torch.long)
        return assemble(self.data, split, rows, candidates, targets, self.history_len)


def epoch_batches(num_samples: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world: int = 1) -> list[np.ndarray]:
    """This process's sample ids per step: a seeded permutation cut into global batches.

    Every process gets the same number of steps (DDP needs that); with several processes the
    last global batch wraps around to the start so no rank is left empty.
    """
    rng = np.random.default_rng([seed, epoch])
    order = np.arange(num_samples, dtype=np.int32 if num_samples < 2**31 else np.int64)
    rng.shuffle(order)  # in place: no int64 copy of a possibly huge index
    global_size = batch_size * world
    steps = max(1, -(-num_samples // global_size)) if num_samples else 0
    batches = []
    for step in range(steps):
        lo = step * global_size + rank * batch_size
        if world == 1:
            ids = order[lo : lo + batch_size]
        else:
            ids = order[np.arange(lo, lo + batch_size) % num_samples]
        batches.append(ids)
    return batches


class BatchStream(torch.utils.data.IterableDataset):
    """Yields ready Batch objects for one epoch, starting at `start_step` (for --resume)."""

    def __init__(self, samples: TrainSamples, batches: list[np.ndarray], seed: int, epoch: int, start_step: int = 0):
        super().__init__()
        self.samples, self.batches = samples, batches
        self.seed, self.epoch, self.start_step = seed, epoch, start_step

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for step in range(self.start_step + worker, len(self.batches), workers):
            yield self.samples.batch(self.batches[step], self.seed, self.epoch)

    def __len__(self) -> int:
        return len(self.batches) - self.start_step
