"""NRMS (Wu et al., EMNLP 2019): multi-head self-attention + additive attention, for news and users."""

from __future__ import annotations

import torch
from torch import nn

from recsys.layers.dropout import Dropout
from recsys.inputs import NewsInputs, UserInputs
from recsys.layers import AdditiveAttention, MultiHeadSelfAttention
from recsys.models.base import FeatureSizes, MatchingModel, ModelConfig


class NRMSUserEncoder(nn.Module):
    """Self-attention across browsed news, then additive attention pooling (shared with PLMNR)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention = MultiHeadSelfAttention(config.embed_dim, config.num_heads, config.dropout)
        self.pool = AdditiveAttention(config.embed_dim)
        self.dropout = Dropout(config.dropout)

    def forward(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.to(torch.bool)
        return self.pool(self.dropout(self.attention(history, mask)), mask)


class NRMS(MatchingModel):
    name = "nrms"

    def __init__(self, config: ModelConfig, sizes: FeatureSizes) -> None:
        super().__init__(config, sizes)
        dim = config.embed_dim
        self.embedder = self.feature_embedder()
        self.news_attention = MultiHeadSelfAttention(dim, config.num_heads, config.dropout)
        self.news_pool = AdditiveAttention(dim)
        self.user_encoder = NRMSUserEncoder(config)
        self.dropout = Dropout(config.dropout)

    def encode_news(self, news: NewsInputs) -> torch.Tensor:
        tokens, mask = self.embedder.sequence(news)
        contextual = self.news_attention(self.dropout(tokens), mask)
        return self.news_pool(self.dropout(contextual), mask)

    def encode_user(self, history: torch.Tensor, user: UserInputs) -> torch.Tensor:
        return self.fuse(self.user_encoder(history, user.history_mask), user)
