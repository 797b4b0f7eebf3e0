"""LSTUR (An et al., ACL 2019), the LSTUR-ini variant.

News: CNN + additive attention over the GENRE feature tokens. Users: a GRU over the browsed news
gives the short-term representation; its initial state is the long-term user-id embedding. During
training the long-term embedding is masked (zeroed) per user with probability user_mask_prob, as
the paper does to cope with users unseen in training.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from recsys.layers.dropout import Dropout
from recsys.inputs import NewsInputs, UserInputs
from recsys.layers import AdditiveAttention, CNNTextEncoder
from recsys.models.base import FeatureSizes, MatchingModel, ModelConfig


class LSTUR(MatchingModel):
    name = "lstur"

    def __init__(self, config: ModelConfig, sizes: FeatureSizes) -> None:
        super().__init__(config, sizes)
        dim = config.embed_dim
        self.embedder = self.feature_embedder()
        self.cnn = CNNTextEncoder(dim, dim, window=3, dropout=config.dropout)
        self.news_pool = AdditiveAttention(dim)
        self.dropout = Dropout(config.dropout)
        self.long_term = nn.Embedding(sizes.num_users, dim, padding_idx=0)
        # GRU states live in (-1, 1); a unit-variance start would saturate the gates of every user.
        nn.init.normal_(self.long_term.weight, std=0.1)
        with torch.no_grad():
            self.long_term.weight[0].zero_()
        self.gru = nn.GRU(dim, dim, batch_first=True)

    def encode_news(self, news: NewsInputs) -> torch.Tensor:
        tokens, mask = self.embedder.sequence(news)
        return self.news_pool(self.cnn(self.dropout(tokens), mask), mask)

    def encode_user(self, history: torch.Tensor, user: UserInputs) -> torch.Tensor:
        long_term = self.long_term(user.user_index)
        if self.training and self.config.user_mask_prob > 0:
            keep = torch.rand(long_term.shape[0], 1, device=long_term.device) >= self.config.user_mask_prob
            long_term = long_term * keep.to(long_term.dtype)
        mask = user.history_mask.to(torch.bool)
        lengths = mask.sum(dim=1)
        # Move real items to the front, keeping their order, so packing skips the padding.
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
        packed_history = torch.gather(history, 1, order.unsqueeze(-1).expand_as(history))
        packed = pack_padded_sequence(
            packed_history, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False
        )
        _, last = self.gru(packed, long_term.unsqueeze(0).contiguous())
        short_term = torch.where((lengths > 0).unsqueeze(-1), last.squeeze(0), long_term)
        return self.fuse(short_term, user)
