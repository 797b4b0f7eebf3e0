"""Tiny tensors and a synthetic click task for the model tests (no store, no trainer)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from recsys.catalog import MODEL_NAMES
from recsys.inputs import NewsInputs, UserInputs
from recsys.metrics import impression_metrics
from recsys.models import FeatureSizes, ModelConfig, NewsRecommender, build_model

CLS, SEP = 101, 102
TOKEN_BASE = 1000  # real MiniLM WordPiece ids, so PLMNR sees ordinary tokens
TOKENS_PER_CATEGORY = 40
NUM_CATEGORIES = 4
TITLE_LEN = 8
HISTORY_LEN = 6
ALL_FEATURES = ("title", "abstract", "category", "subcategory", "image")
# DIRE reads news through a prepared LLM folder: tests/test_dire.py prepares one and covers it.
LLM_FREE_MODELS = tuple(name for name in MODEL_NAMES if name != "dire")

SIZES = FeatureSizes(
    vocab_size=TOKEN_BASE + TOKENS_PER_CATEGORY * (NUM_CATEGORIES + 1),
    num_categories=NUM_CATEGORIES + 1,
    num_subcategories=2 * NUM_CATEGORIES + 1,
    num_users=41,
    num_topics=6,
    num_regions=5,
)


def tiny_config(**overrides: object) -> ModelConfig:
    base = dict(embed_dim=16, num_heads=2, transformer_layers=1, dropout=0.1, history_len=HISTORY_LEN, title_len=TITLE_LEN)
    base.update(overrides)
    return ModelConfig(**base)  # type: ignore[arg-type]


def make_text(categories: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """"[CLS] words [SEP]" then 0-padding, words drawn from each news' category token range."""
    count = categories.shape[0]
    words = TOKEN_BASE + categories.unsqueeze(1) * TOKENS_PER_CATEGORY + torch.randint(
        0, TOKENS_PER_CATEGORY, (count, TITLE_LEN - 2), generator=generator
    )
    lengths = torch.randint(2, TITLE_LEN - 1, (count,), generator=generator)
    text = torch.zeros(count, TITLE_LEN, dtype=torch.long)
    for row in range(count):
        n = int(lengths[row])
        text[row, : n + 2] = torch.cat([torch.tensor([CLS]), words[row, :n], torch.tensor([SEP])])
    return text


def make_news(categories: torch.Tensor, generator: torch.Generator, features: tuple[str, ...] = ALL_FEATURES) -> NewsInputs:
    """News whose title tokens come from a per-category token range (the learnable signal)."""
    count = categories.shape[0]
    title = make_text(categories, generator)
    news = NewsInputs(
        title=title,
        title_mask=title != 0,
        category=categories.clone(),
        subcategory=2 * categories - torch.randint(0, 2, (count,), generator=generator),
    )
    if "abstract" in features:
        news.abstract = make_text(categories, generator)
        news.abstract_mask = news.abstract != 0
    if "image" in features:
        news.image = torch.randn(count, 512, generator=generator)
        news.image_present = torch.rand(count, generator=generator) > 0.3
    return news


def make_users(batch: int, generator: torch.Generator, profile: bool = True) -> UserInputs:
    lengths = torch.randint(0, HISTORY_LEN + 1, (batch,), generator=generator)
    lengths[0] = 0  # one user without any history
    lengths[-1] = HISTORY_LEN
    positions = torch.arange(HISTORY_LEN).unsqueeze(0)
    history_mask = positions >= (HISTORY_LEN - lengths).unsqueeze(1)  # right-aligned
    user = UserInputs(history_mask=history_mask, user_index=torch.randint(0, SIZES.num_users, (batch,), generator=generator))
    if profile:
        user.topics = torch.randint(1, SIZES.num_topics, (batch, 3), generator=generator)
        user.topics_mask = torch.tensor([[True, True, False]]).repeat(batch, 1)
        user.regions = torch.randint(1, SIZES.num_regions, (batch, 2), generator=generator)
        user.regions_mask = torch.ones(batch, 2, dtype=torch.bool)
        user.has_profile = torch.ones(batch, dtype=torch.bool)
        user.has_profile[1] = False
    return user


def forward(model: NewsRecommender, news: NewsInputs, history_ids: torch.Tensor, user: UserInputs, candidate_ids: torch.Tensor) -> torch.Tensor:
    """Logits [B, C] the way the trainer computes them: encode news once, gather, then score."""
    vectors = model.encode_news(news)
    history = vectors[history_ids]
    candidates = vectors[candidate_ids]
    if model.kind == "matching":
        return model.score(model.encode_user(history, user), candidates)
    batch, count = candidate_ids.shape
    repeat = lambda t: None if t is None else t.repeat_interleave(count, dim=0)  # noqa: E731
    flat_user = UserInputs(**{k: repeat(v) for k, v in vars(user).items()})
    flat = model.score(history.repeat_interleave(count, dim=0), flat_user, candidates.reshape(batch * count, -1))
    return flat.view(batch, count)


@dataclass
class ClickTask:
    """Users like one category: history and the clicked candidate are from it, negatives are not."""

    news: NewsInputs
    users: UserInputs
    history: torch.Tensor  # [U, H] news ids (0 where padded)
    candidates: torch.Tensor  # [U, 5] clicked first
    labels: torch.Tensor  # [U, 5]


def click_task(
    users: int, seed: int, features: tuple[str, ...], news_per_category: int = 20, cold: bool = False
) -> ClickTask:
    """The click task; `cold` users have no history at all and only their generated profile
    (first topic = liked category) tells what they like, which only interest fusion can use."""
    generator = torch.Generator().manual_seed(seed)
    categories = torch.arange(1, NUM_CATEGORIES + 1).repeat_interleave(news_per_category)
    categories = torch.cat([torch.zeros(1, dtype=torch.long), categories])  # row 0 = padding news
    news = make_news(categories, generator, features)
    user = make_users(users, generator)
    user.history_mask[:, -2:] = True  # everyone has some signal
    favourite = torch.randint(1, NUM_CATEGORIES + 1, (users,), generator=generator)
    # returning users: an id tells the long-term preference, as LSTUR's user embedding assumes
    user.user_index = favourite + NUM_CATEGORIES * torch.randint(0, (SIZES.num_users - 1) // NUM_CATEGORIES, (users,), generator=generator)
    history = torch.zeros(users, HISTORY_LEN, dtype=torch.long)
    candidates = torch.zeros(users, 5, dtype=torch.long)
    for row in range(users):
        liked = torch.nonzero(categories == favourite[row]).squeeze(1)
        other = torch.nonzero((categories != favourite[row]) & (categories != 0)).squeeze(1)
        picks = liked[torch.randperm(liked.numel(), generator=generator)[: HISTORY_LEN + 1]]
        history[row] = torch.where(user.history_mask[row], picks[:HISTORY_LEN], torch.zeros_like(picks[:HISTORY_LEN]))
        candidates[row, 0] = picks[HISTORY_LEN]
        candidates[row, 1:] = other[torch.randint(0, other.numel(), (4,), generator=generator)]
    if cold:
        user.history_mask[:] = False
        history.zero_()
        user.topics[:, 0] = favourite
        user.has_profile[:] = True
        user.user_index.zero_()  # new users: LSTUR's long-term embedding knows nothing either
    labels = torch.zeros(users, 5)
    labels[:, 0] = 1
    return ClickTask(news, user, history, candidates, labels)


def rows(user: UserInputs, index: torch.Tensor) -> UserInputs:
    return UserInputs(**{k: None if v is None else v[index] for k, v in vars(user).items()})


def train_and_auc(
    name: str, features: tuple[str, ...], epochs: int, seed: int = 0, cold: bool = False, **overrides: object
) -> float:
    """Train `name` on the click task (CE for matching, BCE for ranking) and return test AUC."""
    torch.manual_seed(seed)
    train = click_task(240, seed, features, cold=cold)
    test = click_task(60, seed + 100, features, cold=cold)
    test.news = train.news  # same catalogue; unseen users and impressions
    model = build_model(name, tiny_config(features=features, **overrides), SIZES)
    optimizer = torch.optim.Adam((p for p in model.parameters() if p.requires_grad), lr=5e-3)
    batch = 32
    for _ in range(epochs):
        model.train()
        order = torch.randperm(train.history.shape[0])
        for start in range(0, order.numel(), batch):
            index = order[start : start + batch]
            logits = forward(model, train.news, train.history[index], rows(train.users, index), train.candidates[index])
            if model.kind == "matching":
                loss = F.cross_entropy(logits, torch.zeros(index.numel(), dtype=torch.long))
            else:
                loss = F.binary_cross_entropy_with_logits(logits, train.labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        scores = forward(model, train.news, test.history, test.users, test.candidates).numpy()
    labels = test.labels.numpy()
    return impression_metrics(list(labels), list(scores.astype(np.float64)))["auc"]
