"""Dropout whose CPU mask costs a fraction of torch's.

On CPU, `nn.Dropout` draws one Bernoulli sample per element (`aten::bernoulli_`), which took 21-37 %
of a NAML/LSTUR/NRMS/BST training step. Here one 64-bit random word gives four 15-bit uniform
lanes, so the generator runs a quarter as often, and the mask is one compare. The keep
probability is quantized to 1/32768 (0.2 -> 0.200012): far below any effect on training.
Elsewhere (CUDA, evaluation, p = 0) it is exactly `torch.nn.functional.dropout`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LANE_LEVELS = 32768  # 15 random bits per lane


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool mask, True with probability 1 - p (to 1/32768), from the global torch generator."""
    count = 1
    for size in shape:
        count *= size
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_()  # 63 random bits each
    lanes = words.view(torch.int16)[:count].view(shape)  # 4 lanes per word; the top lane has 15 bits
    return lanes.bitwise_and(LANE_LEVELS - 1) >= round(LANE_LEVELS * p)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """F.dropout's contract (zero with probability p, scale the rest by 1/(1-p)); cheap mask on CPU."""
    if not training or p == 0.0 or x.device.type != "cpu":
        return F.dropout(x, p, training)
    multiplier = keep_mask(x.shape, p, x.device).to(x.dtype).mul_(1.0 / (1.0 - p))
    return x * multiplier  # autograd keeps only the multiplier for backward


class Dropout(nn.Module):
    """Drop-in for nn.Dropout (same `p`, train/eval behaviour)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
