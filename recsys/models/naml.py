"""NAML (Wu et al., IJCAI 2019): attentive multi-view learning.

Each view (title, abstract, category, subcategory, as configured) is encoded on its own: text
views by CNN + additive word attention, category views by an embedding and a dense layer; a
view-level additive attention combines them. Following GENRE §4.1, NAML keeps its own category
views and the image token is concatenated to the title sequence. The user encoder is additive
attention over browsed news.
"""

from __future__ import annotations

import torch
from torch import nn

from recsys.layers.dropout import Dropout
from recsys.inputs import NewsInputs, UserInputs
from recsys.layers import AdditiveAttention, CNNTextEncoder
from recsys.models.base import FeatureSizes, MatchingModel, ModelConfig


class _TextView(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.cnn = CNNTextEncoder(dim, dim, window=3, dropout=dropout)
        self.pool = AdditiveAttention(dim)
        self.dropout = Dropout(dropout)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pool(self.cnn(self.dropout(tokens), mask), mask)


class NAML(MatchingModel):
    name = "naml"

    def __init__(self, config: ModelConfig, sizes: FeatureSizes) -> None:
        super().__init__(config, sizes)
        dim = config.embed_dim
        self.embedder = self.feature_embedder()
        self.text_views = nn.ModuleDict({f: _TextView(dim, config.dropout) for f in ("title", "abstract") if config.uses(f)})
        dense = [f for f in ("category", "subcategory") if config.uses(f)]
        # Without a title the image has no sequence to join, so it becomes a view of its own.
        if config.uses("image") and not config.uses("title"):
            dense.append("image")
        self.dense_views = nn.ModuleDict({f: nn.Sequential(nn.Linear(dim, dim), nn.ReLU()) for f in dense})
        self.view_pool = AdditiveAttention(dim)
        self.user_pool = AdditiveAttention(dim)

    def encode_news(self, news: NewsInputs) -> torch.Tensor:
        views = []
        for field, encoder in self.text_views.items():
            tokens, mask = self.embedder.sequence(news, parts=(field, "image") if field == "title" else (field,))
            views.append(encoder(tokens, mask))
        for field, encoder in self.dense_views.items():
            token, _ = self.embedder.special(news, field)
            views.append(encoder(token))
        return self.view_pool(torch.stack(views, dim=1))

    def encode_user(self, history: torch.Tensor, user: UserInputs) -> torch.Tensor:
        return self.fuse(self.user_pool(history, user.history_mask.to(torch.bool)), user)
