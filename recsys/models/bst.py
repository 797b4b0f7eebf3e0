"""BST (Chen et al., DLP-KDD 2019): a transformer over the behaviour sequence with the target item
appended, learned positional embeddings, then an MLP over the flattened transformer output
concatenated with the other features (the user vector, fused when interest fusion is on)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recsys.inputs import UserInputs
from recsys.layers import MLP
from recsys.layers.transformer import PackedTransformerEncoder
from recsys.models.base import FeatureSizes, ModelConfig, RankingModel


class BST(RankingModel):
    name = "bst"

    def __init__(self, config: ModelConfig, sizes: FeatureSizes) -> None:
        super().__init__(config, sizes)
        dim = config.embed_dim
        self.length = config.history_len + 1  # history slots + the target item, last
        self.positions = nn.Embedding(self.length, dim)
        layer = nn.TransformerEncoderLayer(
            dim, config.num_heads, dim_feedforward=4 * dim, dropout=config.dropout,
            activation=F.leaky_relu, batch_first=True,
        )
        # only the real history slots (and the target) go through the position-wise parts
        self.transformer = PackedTransformerEncoder(layer, config.transformer_layers, enable_nested_tensor=False)
        self.mlp = MLP(self.length * dim + 2 * dim, (256, 128), out_dim=1, dropout=config.dropout)

    def score(self, history: torch.Tensor, user: UserInputs, candidate: torch.Tensor) -> torch.Tensor:
        mask = user.history_mask.to(torch.bool)
        user_vector = self.fuse(self.mean_history(history, user), user)
        history, mask = self._fit(history, mask)
        sequence = torch.cat([history, candidate.unsqueeze(1)], dim=1) + self.positions.weight
        full_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = self.transformer(sequence, src_key_padding_mask=~full_mask)
        flat = (out * full_mask.unsqueeze(-1).to(out.dtype)).flatten(1)
        return self.mlp(torch.cat([flat, user_vector, candidate], dim=-1)).squeeze(-1)

    def _fit(self, history: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-aligned histories padded on the left (or cut to the most recent) to history_len,
        so every position embedding always means "k items before the target"."""
        extra = self.length - 1 - history.shape[1]
        if extra < 0:
            return history[:, -extra:], mask[:, -extra:]
        if extra > 0:
            history = F.pad(history, (0, 0, extra, 0))
            mask = F.pad(mask, (extra, 0), value=False)
        return history, mask
