"""Attention building blocks of NAML / NRMS / LSTUR / PLMNR, all mask-aware.

Masks are bool, True on real positions. A row whose mask is all False (an empty history) pools
to the zero vector instead of NaN, because the trainer may well meet users with no history.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recsys.layers.dropout import dropout as cheap_dropout
from recsys.layers.packing import Packing, packed_self_attention


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None, dim: int = -1) -> torch.Tensor:
    """Softmax over `dim` restricted to mask; all-masked rows give all-zero weights (no NaN)."""
    if mask is None:
        return torch.softmax(scores, dim=dim)
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=dim) * mask
    return weights / weights.sum(dim=dim, keepdim=True).clamp_min(1e-12)


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None, dim: int = 1) -> torch.Tensor:
    """Mean of `values` [.., L, D] over the positions where mask [.., L] is True (zero if none)."""
    if mask is None:
        return values.mean(dim=dim)
    weights = mask.to(values.dtype).unsqueeze(-1)
    return (values * weights).sum(dim=dim) / weights.sum(dim=dim).clamp_min(1.0)


class AdditiveAttention(nn.Module):
    """a_i = softmax(q . tanh(W h_i + b)); output Σ a_i h_i (Wu et al., NAML/NRMS)."""

    def __init__(self, dim: int, query_dim: int = 200) -> None:
        super().__init__()
        self.project = nn.Linear(dim, query_dim)
        self.query = nn.Parameter(torch.empty(query_dim).uniform_(-0.1, 0.1))

    def weights(self, values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # tanh(z) = 2 sigmoid(2z) - 1, so q . tanh(z) = (2q) . sigmoid(2z) - sum(q), and the
        # softmax ignores that constant: the same weights up to float rounding, with sigmoid
        # (torch.tanh took ~7x torch.sigmoid's time on a CPU in this torch build; the 2 is
        # folded into the projection instead of a pass over its output)
        projected = F.linear(values, 2 * self.project.weight, 2 * self.project.bias)
        return masked_softmax(torch.sigmoid(projected) @ (2 * self.query), mask)

    def forward(self, values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """values [B, L, D], mask [B, L] -> [B, D]."""
        return torch.einsum("bl,bld->bd", self.weights(values, mask), values)

    def forward_packed(self, values: torch.Tensor, packing: Packing) -> torch.Tensor:
        """forward on the real positions only: values [T, D] packed by `packing` -> [N, D] (zeros
        for a row without a real position, as forward's all-masked rows)."""
        projected = F.linear(values, 2 * self.project.weight, 2 * self.project.bias)
        scores = torch.sigmoid(projected) @ (2 * self.query)  # [T]
        laid_out = scores.new_zeros(packing.padding.shape)
        laid_out[packing.rows, packing.slots] = scores
        weights = masked_softmax(laid_out, ~packing.padding)[packing.rows, packing.slots]
        weighted = weights.unsqueeze(-1) * values
        return weighted.new_zeros(packing.batch, values.shape[-1]).index_add_(0, packing.rows, weighted)


class MultiHeadSelfAttention(nn.Module):
    """Scaled dot-product self-attention with h heads (NRMS), keys restricted to the mask.

    Rows with no real key at all (an empty history) attend everywhere instead, which keeps them
    finite; their outputs are padding that the following masked pooling ignores. NRMS runs
    `forward_packed` (the real positions only); `forward` is the padded form it equals.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """values [B, L, D], mask [B, L] -> [B, L, D]."""
        batch, length, dim = values.shape
        q, k, v = self.qkv(values).view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        key_mask = None
        if mask is not None:
            key_mask = mask.to(torch.bool)[:, None, None, :]
            key_mask = key_mask | ~key_mask.any(dim=-1, keepdim=True)
        if self.training and self.dropout > 0 and values.device.type == "cpu":
            # SDPA's math path with the cheap CPU dropout mask (recsys/layers/dropout.py)
            scores = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
            if key_mask is not None:
                scores = scores.masked_fill(~key_mask, float("-inf"))
            weights = cheap_dropout(torch.softmax(scores, dim=-1), self.dropout, True)
            attended = weights @ v
        else:
            attended = F.scaled_dot_product_attention(
                q, k, v, attn_mask=key_mask, dropout_p=self.dropout if self.training else 0.0
            )  # [B, h, L, hd]
        return self.out(attended.transpose(1, 2).reshape(batch, length, dim))

    def forward_packed(self, values: torch.Tensor, packing: Packing) -> torch.Tensor:
        """forward on the real positions only: values [T, D] packed by `packing` -> [T, D], each
        attending to its own row's real positions."""
        heads = packed_self_attention(values, packing, self.qkv.weight, self.qkv.bias, self.num_heads, self.dropout,
                                      self.training)
        return self.out(heads)
