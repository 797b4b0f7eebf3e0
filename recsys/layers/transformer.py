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
from torch import nn

from recsys.layers.dropout import dropout
from recsys.layers.packing import Packing, packed_self_attention


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
        packing = Packing.of(~padding)
        assert packing is not None  # _packable: some real slot
        x = packing.pack(src)  # [N, D]
        for layer in self.layers:
            x = _packed_layer(layer, x, packing)
        return packing.unpack(x, src.shape[1])

    def _packable(self, src: torch.Tensor, mask: torch.Tensor | None, padding: torch.Tensor | None,
                  is_causal: bool | None) -> bool:
        return (padding is not None and padding.dtype == torch.bool and mask is None and not is_causal
                and self.norm is None and src.dim() == 3 and bool((~padding).any())
                and all(type(layer) is nn.TransformerEncoderLayer and layer.self_attn.batch_first
                        and layer.self_attn._qkv_same_embed_dim and layer.self_attn.bias_k is None
                        and not layer.self_attn.add_zero_attn and layer.self_attn.in_proj_bias is not None
                        for layer in self.layers))


def _packed_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor, packing: Packing) -> torch.Tensor:
    """One post- or pre-norm encoder layer on the packed real positions x [N, D]."""
    training = layer.training
    if layer.norm_first:
        x = x + dropout(_packed_attention(layer.self_attn, layer.norm1(x), packing), layer.dropout1.p, training)
        return x + _feed_forward(layer, layer.norm2(x))
    x = layer.norm1(x + dropout(_packed_attention(layer.self_attn, x, packing), layer.dropout1.p, training))
    return layer.norm2(x + _feed_forward(layer, x))


def _feed_forward(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    hidden = dropout(layer.activation(layer.linear1(x)), layer.dropout.p, layer.training)
    return dropout(layer.linear2(hidden), layer.dropout2.p, layer.training)


def _packed_attention(attention: nn.MultiheadAttention, x: torch.Tensor, packing: Packing) -> torch.Tensor:
    """nn.MultiheadAttention's self-attention for the packed positions (padding keys left out)."""
    heads = packed_self_attention(x, packing, attention.in_proj_weight, attention.in_proj_bias, attention.num_heads,
                                  attention.dropout, attention.training)
    return attention.out_proj(heads)
