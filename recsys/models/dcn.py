"""DCN (Wang et al., ADKDD 2017): a cross network of 3 cross layers in parallel with a deep
network over the stacked user and candidate fields, combined by a final logistic layer."""

from __future__ import annotations

import torch
from torch import nn

from recsys.layers import MLP, CrossNetwork
from recsys.models.base import FeatureSizes, MeanHistoryRankingModel, ModelConfig

CROSS_LAYERS = 3


class DCN(MeanHistoryRankingModel):
    name = "dcn"

    def __init__(self, config: ModelConfig, sizes: FeatureSizes) -> None:
        super().__init__(config, sizes)
        width = 2 * config.embed_dim
        self.cross = CrossNetwork(width, CROSS_LAYERS)
        self.deep = MLP(width, (256, 128), dropout=config.dropout)
        self.combine = nn.Linear(width + self.deep.out_dim, 1)

    def head(self, user_vector: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        x0 = torch.cat([user_vector, candidate], dim=-1)
        return self.combine(torch.cat([self.cross(x0), self.deep(x0)], dim=-1)).squeeze(-1)
