"""A learnable EncodedDataset built in memory from torch and numpy alone.

For checks that must train a recommender where nothing else of the project is installed (a lent
GPU machine with torch, transformers and accelerate only: no DuckDB, no pyarrow, no tokenizer
package). The data has the shape `recsys.data.encode_variant` produces for the `original` variant
with title + category: each user likes one category, clicks news of it, and their history holds
news of it; titles are "[CLS] words [SEP]" over WordPiece-like ids, each category with its own
words. Any model that reads titles or categories can learn it, so AUC well above 0.5 after an
epoch says the training ran for real.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys.data import EncodedDataset, SplitArrays, used_word_ids
from recsys.inputs import NewsInputs, NewsTexts

CLS_ID, SEP_ID = 101, 102  # MiniLM's WordPiece ids, as the real encoder writes them
FIRST_WORD_ID = 1000  # word ids start above WordPiece's special and unused rows
VOCAB_SIZE = 30_522  # MiniLM's vocabulary: the size a real EncodedDataset records


@dataclass(frozen=True)
class SyntheticSizes:
    """How much synthetic data; the defaults train an epoch in seconds on one CPU core."""

    news: int = 400
    users: int = 200
    categories: int = 8
    words_per_category: int = 40
    title_len: int = 12  # tokens, [CLS] and [SEP] included
    history: int = 10  # history items of a warm user
    impressions_per_user: tuple[int, int, int] = (4, 1, 1)  # train, dev, test
    candidates: int = 5  # per impression: one or two clicks, the rest not clicked

    def __post_init__(self) -> None:
        if self.news < 2 * self.categories or self.users < 1 or self.categories < 2:
            raise ValueError(f"synthetic sizes too small: {self}")
        if self.title_len < 3 or self.candidates < 3 or self.history < 1:
            raise ValueError(f"synthetic sizes too small: {self}")
        largest_category = -(-self.news // self.categories)
        if self.news - largest_category < self.candidates - 1:  # distinct unclicked candidates
            raise ValueError(f"synthetic sizes too small: {self}")


def synthetic_dataset(sizes: SyntheticSizes = SyntheticSizes(), seed: int = 0, name: str = "synthetic") -> EncodedDataset:
    """The dataset described in the module docstring; the same `sizes` and `seed` give the same
    arrays. Every third user is cold (2 history items): the "new" user group is never empty."""
    rng = np.random.default_rng(seed)
    category = np.arange(sizes.news) % sizes.categories  # news row i+1 has category category[i]
    news_of = [np.flatnonzero(category == c) + 1 for c in range(sizes.categories)]
    title = np.zeros((sizes.news + 1, sizes.title_len), dtype=np.int64)
    words = sizes.title_len - 2
    for row in range(1, sizes.news + 1):
        c = category[row - 1]
        own = FIRST_WORD_ID + c * sizes.words_per_category + rng.integers(0, sizes.words_per_category, words)
        title[row, 0], title[row, 1 : 1 + words], title[row, 1 + words] = CLS_ID, own, SEP_ID
    cat = np.zeros(sizes.news + 1, dtype=np.int64)
    cat[1:] = category + 1  # id 0 is padding
    news = NewsInputs(
        title=torch.from_numpy(title), title_mask=torch.from_numpy(title != 0),
        category=torch.from_numpy(cat), subcategory=torch.from_numpy(cat.copy()),
    )
    favourite = np.arange(sizes.users) % sizes.categories
    history_len = np.where(np.arange(sizes.users) % 3 == 0, 2, sizes.history)
    histories = [rng.choice(news_of[favourite[u]], min(int(history_len[u]), len(news_of[favourite[u]])), replace=False)
                 for u in range(sizes.users)]
    splits: dict[str, SplitArrays] = {}
    next_id = 1
    for split, count in zip(("train", "dev", "test"), sizes.impressions_per_user, strict=True):
        rows = _impressions(rng, sizes, favourite, histories, news_of, count, next_id)
        next_id += len(rows.impression_id)
        splits[split] = rows
    return EncodedDataset(
        dataset=name, variant="original", fingerprint=f"synthetic-{seed}-{sizes}", news=news,
        news_ids=[f"N{i}" for i in range(1, sizes.news + 1)], num_categories=sizes.categories + 1,
        num_subcategories=sizes.categories + 1, num_users=sizes.users + 1, vocab_size=VOCAB_SIZE,
        profiles=None, splits=splits, stats={"news": sizes.news, "users": sizes.users},
        word_ids=used_word_ids(news),
    )


def _impressions(rng: np.random.Generator, sizes: SyntheticSizes, favourite: np.ndarray,
                 histories: list[np.ndarray], news_of: list[np.ndarray], per_user: int, first_id: int) -> SplitArrays:
    """Vectorised over impressions (MIND-small-sized sets in seconds): 1-2 distinct clicks of the
    user's category, the rest distinct news of the other categories, in a random order."""
    users = np.repeat(np.arange(sizes.users), per_user)
    rows, width = len(users), sizes.candidates
    fav = favourite[users]
    liked, liked_len = _table(news_of)
    others, others_len = _table([np.concatenate([news_of[o] for o in range(len(news_of)) if o != c]) for c in range(len(news_of))])
    clicks = 1 + rng.integers(0, 2, rows)
    first = rng.integers(0, liked_len[fav])
    second = (first + 1 + rng.integers(0, liked_len[fav] - 1)) % liked_len[fav]  # never the first
    k = width - 1
    # k distinct positions among the other categories' news: sorted draws from [0, n - k], plus 0..k-1.
    draws = np.sort((rng.random((rows, k)) * (others_len[fav] - k + 1)[:, None]).astype(np.int64), axis=1) + np.arange(k)
    negatives = others[fav[:, None], draws]
    picked = np.empty((rows, width), dtype=np.int64)
    picked[:, 0] = liked[fav, first]
    picked[:, 1] = np.where(clicks == 2, liked[fav, second], negatives[:, k - 1])
    picked[:, 2:] = negatives[:, : k - 1]
    label = (np.arange(width)[None, :] < clicks[:, None]).astype(np.int8)
    order = np.argsort(rng.random((rows, width)), axis=1)
    history = [histories[u] for u in users]
    lengths = np.array([len(h) for h in history], dtype=np.int64)
    return SplitArrays(
        impression_id=np.arange(first_id, first_id + rows, dtype=np.int64),
        user_index=(users + 1).astype(np.int64),
        profile_index=np.zeros(rows, dtype=np.int64),
        history=np.concatenate(history).astype(np.int32),
        history_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        original_history_len=lengths,
        candidates=np.take_along_axis(picked, order, axis=1).ravel().astype(np.int32),
        candidate_offsets=np.arange(0, (rows + 1) * width, width, dtype=np.int64),
        labels=np.take_along_axis(label, order, axis=1).ravel(),
    )


def synthetic_texts(news: NewsInputs) -> NewsTexts:
    """Raw strings for a synthetic catalogue, for models that read text with their own tokenizer
    (DIRE): each WordPiece id of a title becomes the word "w<id>" ([CLS], [SEP] and padding
    dropped), a category c the word "w<900 + c>", so the strings carry exactly the ids'
    information. No abstracts. Row 0, the padding news, is all empty."""
    titles = [" ".join(f"w{int(i)}" for i in row if int(i) not in (0, CLS_ID, SEP_ID)) for row in news.title]
    categories = ["" if int(c) == 0 else f"w{900 + int(c)}" for c in news.category]
    subcategories = ["" if int(c) == 0 else f"w{900 + int(c)}" for c in news.subcategory]
    return NewsTexts.of(titles, [""] * len(titles), categories, subcategories)


def _table(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged groups as one zero-padded matrix and each group's length."""
    lengths = np.array([len(g) for g in groups], dtype=np.int64)
    table = np.zeros((len(groups), int(lengths.max())), dtype=np.int64)
    for row, group in enumerate(groups):
        table[row, : len(group)] = group
    return table, lengths


__all__ = ["SyntheticSizes", "synthetic_dataset", "synthetic_texts"]
