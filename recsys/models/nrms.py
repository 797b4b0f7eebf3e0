"""NRMS (Wu et al., EMNLP 2019): multi-head self-attention + additive attention, for news and users."""

from __future__ import annotations

import torch
from torch import nn

from recsys.layers.dropout import Dropout
from recsys.inputs import NewsInputs, UserInputs
from recsys.layers import AdditiveAttention, MultiHeadSelfAttention
from recsys.layers.packing import Packing
from recsys.models.base import FeatureSizes, MatchingModel, ModelConfig


def attend_and_pool(values: torch.Tensor, mask: torch.Tensor, attention: MultiHeadSelfAttention,
                    pool: AdditiveAttention, dropout: nn.Module, input_dropout: nn.Module | None = None) -> torch.Tensor:
    """pool(dropout(attention(input_dropout(values), mask)), mask): values [N, L, D], mask [N, L]
    -> [N, D], computed on the real positions only (recsys/layers/packing.py): the same function
    as the padded form up to float rounding, and a row without a real position is zeros as there."""
    mask = mask.to(torch.bool)
    packing = Packing.of(mask)
    if packing is None:
        return values.new_zeros(values.shape[0], values.shape[-1])
    x = packing.pack(values)
    if input_dropout is not None:
        x = input_dropout(x)
    return pool.forward_packed(dropout(attention.forward_packed(x, packing)), packing)


class NRMSUserEncoder(nn.Module):
    """Self-attention across browsed news, then additive attention pooling (shared with PLMNR)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention = MultiHeadSelfAttention(config.embed_dim, config.num_heads, config.dropout)
        self.pool = AdditiveAttention(config.embed_dim)
        self.dropout = Dropout(config.dropout)

    def forward(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return attend_and_pool(history, mask, self.attention, self.pool, self.dropout)


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
        return attend_and_pool(tokens, mask, self.news_attention, self.news_pool, self.dropout, self.dropout)

    def encode_user(self, history: torch.Tensor, user: UserInputs) -> torch.Tensor:
        return self.fuse(self.user_encoder(history, user.history_mask), user)
