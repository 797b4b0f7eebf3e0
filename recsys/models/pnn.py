"""PNN (Qu et al., ICDM 2016), the inner-product variant IPNN: a product layer over the feature
fields (user vector, candidate news vector), then a ReLU MLP to the click logit."""

from __future__ import annotations

import torch

from recsys.layers import MLP, InnerProductLayer
from recsys.models.base import FeatureSizes, MeanHistoryRankingModel, ModelConfig

NUM_FIELDS = 2  # user, candidate


class PNN(MeanHistoryRankingModel):
    name = "pnn"

    def __init__(self, config: ModelConfig, sizes: FeatureSizes) -> None:
        super().__init__(config, sizes)
        self.product = InnerProductLayer(NUM_FIELDS, config.embed_dim, out_dim=config.embed_dim)
        self.mlp = MLP(self.product.out_dim, (256, 128), out_dim=1, dropout=config.dropout)

    def head(self, user_vector: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        fields = torch.stack([user_vector, candidate], dim=1)
        return self.mlp(self.product(fields)).squeeze(-1)
