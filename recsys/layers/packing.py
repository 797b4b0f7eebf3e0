"""The real positions of a padded batch, packed: position-wise work runs on [T, D], not [N, L, D].

A padded batch of token or history sequences ([N, L, D] with a bool mask [N, L], True on real
positions) spends most of its position-wise work (projections, dropout, pooling scores) on
padding whose results are masked away afterwards: NRMS's titles hold about 12 of their 30 slots,
its histories 13 of 50. `Packing` lists the real positions once; `packed_self_attention` runs
multi-head self-attention with the projections on the packed rows and only the scores and weights
on the padded window (the columns holding a real position in some row), padding keys left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recsys.layers.dropout import dropout


@dataclass(frozen=True)
class Packing:
    """The real positions of a mask [N, L]: rows [T] and slots [T] (row-major order) inside the
    window of columns start..start+W-1 that hold a real position in some row; `padding` [N, W] is
    True where the window has none."""

    rows: torch.Tensor
    slots: torch.Tensor
    start: int
    padding: torch.Tensor

    @staticmethod
    def of(mask: torch.Tensor) -> Packing | None:
        """The packing of `mask` [N, L] (bool), or None when it holds no real position."""
        columns = mask.any(dim=0).nonzero().squeeze(1)
        if columns.numel() == 0:
            return None
        start, stop = int(columns[0]), int(columns[-1]) + 1
        window = mask[:, start:stop]
        rows, slots = window.nonzero(as_tuple=True)
        return Packing(rows, slots, start, ~window)

    @property
    def batch(self) -> int:
        return self.padding.shape[0]

    @property
    def width(self) -> int:
        return self.padding.shape[1]

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """[N, L, ...] -> the real positions [T, ...]."""
        return x[:, self.start:self.start + self.width][self.rows, self.slots]

    def unpack(self, x: torch.Tensor, length: int) -> torch.Tensor:
        """[T, ...] -> [N, length, ...], zeros on padding (the inverse of pack on real positions)."""
        out = x.new_zeros(self.batch, length, *x.shape[1:])
        out[self.rows, self.slots + self.start] = x
        return out


def packed_self_attention(x: torch.Tensor, packing: Packing, qkv_weight: torch.Tensor, qkv_bias: torch.Tensor | None,
                          heads: int, p: float, training: bool) -> torch.Tensor:
    """Scaled dot-product self-attention of the packed positions x [T, D] over their own rows'
    real positions: q, k, v = x W^T + b split in thirds (each [h, D/h] per position, the layout of
    nn.MultiheadAttention's in_proj and of NRMS's qkv), weights dropped out with `p` when
    training. Returns the heads' outputs concatenated, [T, D], before any output projection."""
    batch, width = packing.padding.shape
    dim = x.shape[-1]
    head_dim = dim // heads
    qkv = F.linear(x, qkv_weight, qkv_bias)  # [T, 3D]
    laid_out = qkv.new_zeros(3, batch, heads, width, head_dim)
    laid_out[:, packing.rows, :, packing.slots] = qkv.view(-1, 3, heads, head_dim)
    q, k, v = (part.view(batch * heads, width, head_dim) for part in laid_out)
    # a very negative finite bias, not -inf: a row without any real position (left out of the
    # result anyway) keeps a finite softmax
    bias = torch.zeros(packing.padding.shape, dtype=q.dtype, device=q.device)
    bias = bias.masked_fill(packing.padding, torch.finfo(q.dtype).min)
    bias = bias[:, None, None, :].expand(batch, heads, 1, width).reshape(batch * heads, 1, width)
    scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=head_dim ** -0.5)
    weights = dropout(torch.softmax(scores, dim=-1), p, training)
    attended = torch.bmm(weights, v).view(batch, heads, width, head_dim)[packing.rows, :, packing.slots]  # [T, h, hd]
    return attended.reshape(-1, dim)
