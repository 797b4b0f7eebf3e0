"""The CNN text encoder of NAML and LSTUR (Kim-style 1-d convolution over word embeddings)."""

from __future__ import annotations

import torch
from torch import nn

from recsys.layers.dropout import Dropout


class CNNTextEncoder(nn.Module):
    """[B, L, D_in] -> [B, L, filters]: same-length convolution with ReLU; pads are zeroed first
    so padding never leaks into the windows of real tokens."""

    def __init__(self, in_dim: int, filters: int, window: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        if window % 2 == 0:
            raise ValueError(f"window {window} must be odd to keep the sequence length")
        self.conv = nn.Conv1d(in_dim, filters, window, padding=window // 2)
        self.dropout = Dropout(dropout)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            tokens = tokens * mask.unsqueeze(-1).to(tokens.dtype)
        return self.dropout(torch.relu(self.conv(tokens.transpose(1, 2)).transpose(1, 2)))
