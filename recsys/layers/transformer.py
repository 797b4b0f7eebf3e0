"""A transformer encoder that computes only the real positions of padded sequences (BST).

nn.TransformerEncoder runs every position-wise part of a layer (the q/k/v and output projections,
the feed-forward block, the dropouts, the residuals and layer norms) on every slot, padding
included, and the padding's outputs are then thrown away. With a key padding mask those slots
never reach a real position (they are masked as keys), so leaving them out gives the same real
outputs: here the position-wise parts run on the real positions packed into [N, D], and only the
attention itself sees the padded layout, cut to the columns that hold a real position in some row.
On BST's data (a history of 13 items on average, 50 slots) that is about a third of the work.

The layers are torch's own nn.TransformerEncoderLayer modules (same parameters, state-dict keys and
initialisation); their dropouts draw the cheap CPU mask (recsys/layers/dropout.py), torch's own
elsewhere. Padding slots come back as zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recsys.layers.dropout import dropout


class PackedTransformerEncoder(nn.TransformerEncoder):
    """nn.TransformerEncoder whose forward skips the padding slots of `src_key_padding_mask`.

    Falls back to nn.TransformerEncoder's forward for what the packed path does not cover: no
    padding mask, an attention mask or causal masking, a layer that is not a batch-first
    nn.TransformerEncoderLayer over one shared embedding size, or a final norm."""

    def forward(self, src: torch.Tensor, mask: torch.Tensor | None = None,
                src_key_padding_mask: torch.Tensor | None = None, is_causal: bool | None = None) -> torch.Tensor:
        padding = src_key_padding_mask
        if not self._packable(src, mask, padding, is_causal):
            return super().forward(src, mask=mask, src_key_padding_mask=padding, is_causal=is_causal)
        real = ~padding
        columns = real.any(dim=0).nonzero().squeeze(1)
        start, stop = int(columns[0]), int(columns[-1]) + 1
        window = real[:, start:stop]  # the attention's columns: each holds a real slot in some row
        rows, slots = window.nonzero(as_tuple=True)
        packed = src[:, start:stop][rows, slots]  # [N, D]
        for layer in self.layers:
            packed = _packed_layer(layer, packed, rows, slots, ~window)
        out = src.new_zeros(src.shape[0], src.shape[1], packed.shape[-1], dtype=packed.dtype)
        out[rows, slots + start] = packed
        return out

    def _packable(self, src: torch.Tensor, mask: torch.Tensor | None, padding: torch.Tensor | None,
                  is_causal: bool | None) -> bool:
        return (padding is not None and padding.dtype == torch.bool and mask is None and not is_causal
                and self.norm is None and src.dim() == 3 and bool((~padding).any())
                and all(type(layer) is nn.TransformerEncoderLayer and layer.self_attn.batch_first
                        and layer.self_attn._qkv_same_embed_dim and layer.self_attn.bias_k is None
                        and not layer.self_attn.add_zero_attn and layer.self_attn.in_proj_bias is not None
                        for layer in self.layers))


def _packed_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor, rows: torch.Tensor, slots: torch.Tensor,
                  padding: torch.Tensor) -> torch.Tensor:
    """One post- or pre-norm encoder layer on the packed real positions x [N, D]."""
    training = layer.training
    if layer.norm_first:
        x = x + dropout(_packed_attention(layer.self_attn, layer.norm1(x), rows, slots, padding),
                        layer.dropout1.p, training)
        return x + _feed_forward(layer, layer.norm2(x))
    x = layer.norm1(x + dropout(_packed_attention(layer.self_attn, x, rows, slots, padding),
                                layer.dropout1.p, training))
    return layer.norm2(x + _feed_forward(layer, x))


def _feed_forward(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    hidden = dropout(layer.activation(layer.linear1(x)), layer.dropout.p, layer.training)
    return dropout(layer.linear2(hidden), layer.dropout2.p, layer.training)


def _packed_attention(attention: nn.MultiheadAttention, x: torch.Tensor, rows: torch.Tensor, slots: torch.Tensor,
                      padding: torch.Tensor) -> torch.Tensor:
    """nn.MultiheadAttention's self-attention for the packed positions: projections on [N, D],
    scores and weights on the padded [B*h, W, W] window (`padding` [B, W]: True where no real
    slot), padding keys left out."""
    batch, width = padding.shape
    heads, dim = attention.num_heads, x.shape[-1]
    head_dim = dim // heads
    qkv = F.linear(x, attention.in_proj_weight, attention.in_proj_bias)  # [N, 3D]
    laid_out = qkv.new_zeros(3, batch, heads, width, head_dim)
    laid_out[:, rows, :, slots] = qkv.view(-1, 3, heads, head_dim)
    q, k, v = (part.view(batch * heads, width, head_dim) for part in laid_out)
    # a very negative finite bias, not -inf: the padding rows' own (discarded) softmax stays finite,
    # so no NaN can reach the gradient through them
    bias = torch.zeros(padding.shape, dtype=q.dtype, device=q.device).masked_fill(padding, torch.finfo(q.dtype).min)
    bias = bias[:, None, None, :].expand(batch, heads, 1, width).reshape(batch * heads, 1, width)
    scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=head_dim ** -0.5)
    weights = dropout(torch.softmax(scores, dim=-1), attention.dropout, attention.training)
    attended = torch.bmm(weights, v).view(batch, heads, width, head_dim)[rows, :, slots]  # [N, h, hd]
    return attention.out_proj(attended.reshape(-1, dim))
