"""DCN (Wang et al., ADKDD 2017): a cross network of 3 cross layers in parallel with a deep
network over the stacked user and candidate fields, combined by a final logistic layer."""

from __future__ import annotations

import torch
from torch import nn

from recsys.inputs import UserInputs
from recsys.layers import MLP, CrossNetwork
from recsys.models.base import FeatureSizes, ModelConfig, RankingModel

CROSS_LAYERS = 3


class DCN(RankingModel):
    name = "dcn"

    def __init__(self, config: ModelConfig, sizes: FeatureSizes) -> None:
        super().__init__(config, sizes)
        width = 2 * config.embed_dim
        self.cross = CrossNetwork(width, CROSS_LAYERS)
        self.deep = MLP(width, (256, 128), dropout=config.dropout)
        self.combine = nn.Linear(width + self.deep.out_dim, 1)

    def score(self, history: torch.Tensor, user: UserInputs, candidate: torch.Tensor) -> torch.Tensor:
        user_vector = self.fuse(self.mean_history(history, user), user)
        x0 = torch.cat([user_vector, candidate], dim=-1)
        return self.combine(torch.cat([self.cross(x0), self.deep(x0)], dim=-1)).squeeze(-1)
