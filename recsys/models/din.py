"""DIN (Zhou et al., KDD 2018): the local activation unit weighs each browsed news against the
candidate from [h, c, h - c, h * c]; weighted sum pooling (no softmax) gives the user vector,
which with the candidate feeds an MLP. With interest fusion, the pooled vector is fused first."""

from __future__ import annotations

import torch
from torch import nn

from recsys.inputs import UserInputs
from recsys.layers import MLP, DINActivationUnit
from recsys.models.base import FeatureSizes, ModelConfig, RankingModel


class DIN(RankingModel):
    name = "din"

    def __init__(self, config: ModelConfig, sizes: FeatureSizes) -> None:
        super().__init__(config, sizes)
        dim = config.embed_dim
        self.activation = DINActivationUnit(dim)
        self.mlp = MLP(2 * dim, (200, 80), dropout=config.dropout)
        self.out = nn.Linear(self.mlp.out_dim, 1)

    def score(self, history: torch.Tensor, user: UserInputs, candidate: torch.Tensor) -> torch.Tensor:
        pooled = self.activation(history, candidate, user.history_mask.to(torch.bool))
        user_vector = self.fuse(pooled, user)
        return self.out(self.mlp(torch.cat([user_vector, candidate], dim=-1))).squeeze(-1)
