"""The interface every recommender in the zoo implements, its config, and the registry.

GENRE §2.2: news encoder -> user encoder -> interaction. Matching models expose the three parts
separately so the evaluator can cache news and user vectors; ranking models fuse user encoding
and interaction into one `score` because their interaction needs the raw history (DIN, BST).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from recsys.catalog import MODEL_NAMES, NEWS_FEATURES, PLMNR_HISTORY
from recsys.errors import ConfigError
from recsys.inputs import NewsInputs, UserInputs
from recsys.layers import InterestFusion, NewsFeatureEmbedder, masked_mean
from recsys.layers.fusion import FUSION_FORMS

# name -> (module, class); imported lazily so `import recsys.models` stays cheap and PLMNR's
# transformers/peft imports are only paid when PLMNR is built.
_REGISTRY: dict[str, tuple[str, str]] = {
    "naml": ("recsys.models.naml", "NAML"),
    "lstur": ("recsys.models.lstur", "LSTUR"),
    "nrms": ("recsys.models.nrms", "NRMS"),
    "plmnr": ("recsys.models.plmnr", "PLMNR"),
    "dire": ("recsys.models.dire", "DIRE"),
    "bst": ("recsys.models.bst", "BST"),
    "dcn": ("recsys.models.dcn", "DCN"),
    "pnn": ("recsys.models.pnn", "PNN"),
    "din": ("recsys.models.din", "DIN"),
}


@dataclass(frozen=True)
class FeatureSizes:
    """Vocabulary sizes of the dataset's lookups; each count includes row 0 (padding/unknown)."""

    vocab_size: int
    num_categories: int
    num_subcategories: int
    num_users: int
    num_topics: int
    num_regions: int
    # the dataset-local word vocabulary (recsys/layers/word_embedding.py); () = every tokenizer id
    word_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("vocab_size", "num_categories", "num_subcategories", "num_users", "num_topics", "num_regions"):
            if getattr(self, name) < 1:
                raise ValueError(f"FeatureSizes.{name} must be >= 1 (row 0 is padding), got {getattr(self, name)}")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters shared by the zoo; defaults follow the GENRE paper (§4.1)."""

    embed_dim: int = 64
    num_heads: int = 4
    transformer_layers: int = 3  # BST's transformer depth and the number of MiniLM layers PLMNR keeps
    dropout: float = 0.2
    history_len: int = 50
    title_len: int = 30
    abstract_len: int = 50
    features: tuple[str, ...] = ("title", "category")
    use_profile: bool = False  # GENRE interest fusion (eq. 1-2), the `up` variant
    lora_rank: int = 8  # PLMNR's LoRA adapter rank
    user_mask_prob: float = 0.5  # LSTUR: probability of masking the long-term user embedding in training
    encoder: str | None = None  # DIRE: local Hugging Face LLaMA-family folder of its news encoder
    # How the profile meets the user vector (recsys/layers/fusion.py): "gated" starts as the identity
    # on v_u and learns how much profile to add; "paper" is GENRE eq. 2 as written (MLP replaces v_u).
    interest_fusion: str = "gated"
    # PLMNR: how a training step encodes history-only news (catalog.PLMNR_HISTORY): "exact" (the
    # tuned top layer with gradient), "no-grad" (the top layer without gradient), "cached" (a
    # per-epoch table of pooled vectors, then the projection) or "states" (a per-epoch table of
    # the top layer's token states, then pooling and projection); approximations of the training
    # gradient, cheaper per step; evaluation is the same for all four.
    plmnr_history: str = "exact"

    def __post_init__(self) -> None:
        unknown = [f for f in self.features if f not in NEWS_FEATURES]
        if unknown or not self.features:
            raise ConfigError(
                "features", f"{','.join(self.features) or '(empty)'} is not valid; "
                f"use a comma-separated subset of {','.join(NEWS_FEATURES)}"
            )
        if self.embed_dim < 1 or self.embed_dim % self.num_heads:
            raise ConfigError("embed_dim", f"{self.embed_dim} must be a positive multiple of num_heads {self.num_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", f"{self.dropout} must be in [0, 1)")
        if not 0.0 <= self.user_mask_prob <= 1.0:
            raise ConfigError("user_mask_prob", f"{self.user_mask_prob} must be in [0, 1]")
        if self.transformer_layers < 1 or self.history_len < 1 or self.title_len < 3 or self.lora_rank < 1:
            raise ConfigError("model_config", "needs transformer_layers, history_len, lora_rank >= 1 and title_len >= 3")
        if self.interest_fusion not in FUSION_FORMS:
            raise ConfigError("interest_fusion", f"{self.interest_fusion!r} is unknown; use one of {', '.join(FUSION_FORMS)}")
        if self.plmnr_history not in PLMNR_HISTORY:
            raise ConfigError("plmnr_history", f"{self.plmnr_history!r} is unknown; use one of {', '.join(PLMNR_HISTORY)}")

    def uses(self, feature: str) -> bool:
        return feature in self.features


class NewsRecommender(nn.Module):
    """Base of all eight models. `encode_news` never depends on the user, so it can be cached."""

    kind: ClassVar[str]
    name: ClassVar[str]

    def __init__(self, config: ModelConfig, sizes: FeatureSizes) -> None:
        super().__init__()
        self.config = config
        self.sizes = sizes
        # One fusion layer per model, the same module class in all eight (GENRE eq. 1-2).
        self.fusion = (
            InterestFusion(sizes.num_topics, sizes.num_regions, config.embed_dim, config.interest_fusion)
            if config.use_profile
            else None
        )

    def encode_news(self, news: NewsInputs) -> torch.Tensor:  # [N, D]
        raise NotImplementedError

    def encode_step_news(self, news: NewsInputs, candidates: torch.Tensor) -> torch.Tensor:  # [N, D]
        """The news vectors of a training batch; `candidates` [B, C] are positions into `news`.
        Every row with gradient unless a model says otherwise (PLMNR's plmnr_history)."""
        return self.encode_news(news)

    def start_epoch(self, table_weights: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor] | None:
        """Called by the trainer before each training epoch, a resumed one included, after the
        model is in training mode. PLMNR with plmnr_history "cached" or "states" rebuilds its
        history table here, from `table_weights` when given (a resumed epoch: what the table was
        built from before), and returns the weights it was built from, for the checkpoint. The
        others need nothing and return None."""
        return None

    def prepare_news(self, news: NewsInputs, cache_dir: Path | None = None) -> None:
        """Called once with the whole news catalogue before training or evaluating on it.

        PLMNR and DIRE compute their frozen lower layers' hidden states here (cached under
        cache_dir when given); NewsInputs later selected from that catalogue read them back.
        The other models need nothing."""

    def fuse(self, user_vector: torch.Tensor, user: UserInputs) -> torch.Tensor:
        """The interest-aware user vector v_iu when interest fusion is on, else v_u unchanged."""
        return user_vector if self.fusion is None else self.fusion(user_vector, user)

    def feature_embedder(self) -> NewsFeatureEmbedder:
        """The GENRE token-sequence embedder for this model's configured news features."""
        return NewsFeatureEmbedder(
            self.config.features,
            self.config.embed_dim,
            self.sizes.vocab_size,
            self.sizes.num_categories,
            self.sizes.num_subcategories,
            self.sizes.word_ids,
        )


class MatchingModel(NewsRecommender):
    """NAML, LSTUR, NRMS, PLMNR: user vector . news vector (GENRE eq. 4 trains it with CE)."""

    kind: ClassVar[str] = "matching"

    def encode_user(self, history: torch.Tensor, user: UserInputs) -> torch.Tensor:
        """history [B, H, D] news vectors (padded positions per user.history_mask) -> [B, D]."""
        raise NotImplementedError

    def score(self, user_vectors: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """[B, D] x [B, C, D] -> logits [B, C]; a plain dot product so cached vectors give the same scores."""
        return torch.einsum("bd,bcd->bc", user_vectors, candidates)


class RankingModel(NewsRecommender):
    """BST, DCN, PNN, DIN: one logit per (user, candidate) pair (GENRE eq. 3 trains it with BCE)."""

    kind: ClassVar[str] = "ranking"

    def __init__(self, config: ModelConfig, sizes: FeatureSizes) -> None:
        super().__init__(config, sizes)
        self.embedder = self.feature_embedder()

    def encode_news(self, news: NewsInputs) -> torch.Tensor:
        """The ranking models' simple news encoder (GENRE Table 2): average pooling of the feature
        tokens (masked_mean of embedder.sequence, computed without the token tensor)."""
        return self.embedder.mean(news)

    @staticmethod
    def mean_history(history: torch.Tensor, user: UserInputs) -> torch.Tensor:
        """Average-pooled user vector v_u over the real history items (zero for an empty history)."""
        return masked_mean(history, user.history_mask)

    def score(self, history: torch.Tensor, user: UserInputs, candidate: torch.Tensor) -> torch.Tensor:
        """history [B, H, D], candidate [B, D] -> logits [B]."""
        raise NotImplementedError

    def score_pairs(self, history: torch.Tensor, user: UserInputs, candidates: torch.Tensor,
                    owner: torch.Tensor) -> torch.Tensor:
        """Logits [P] of P pairs whose users come once each: history [B, H, D] and `user` of B
        impressions, candidates [P, D], owner [P] (each pair's impression row in 0..B-1).

        Equals `score` on the pairs' gathered rows, to the bit (this default does exactly that); DCN
        and PNN take their mean history once per impression (a per-row sum: the same bits)."""
        return self.score(history[owner], user.select(owner), candidates)


class MeanHistoryRankingModel(RankingModel):
    """A ranking model whose user side is the (fused) mean of the history, whatever the candidate
    (DCN, PNN): `head` scores that vector against the candidate."""

    def head(self, user_vector: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        """user vector [B, D], candidate [B, D] -> logits [B]."""
        raise NotImplementedError

    def score(self, history: torch.Tensor, user: UserInputs, candidate: torch.Tensor) -> torch.Tensor:
        return self.head(self.fuse(self.mean_history(history, user), user), candidate)

    def score_pairs(self, history: torch.Tensor, user: UserInputs, candidates: torch.Tensor,
                    owner: torch.Tensor) -> torch.Tensor:
        """The mean history once per impression, gathered per pair. The fusion stays per pair: its
        matrix products over the same rows as `score`'s give the same bits."""
        return self.head(self.fuse(self.mean_history(history, user)[owner], user.select(owner)), candidates)


def build_model(name: str, config: ModelConfig, sizes: FeatureSizes) -> NewsRecommender:
    """A fresh model by registry name (one of MODEL_NAMES)."""
    if name not in _REGISTRY:
        raise ConfigError("model", f"{name!r} is unknown; choose one of {', '.join(MODEL_NAMES)}")
    module_name, class_name = _REGISTRY[name]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(config, sizes)
