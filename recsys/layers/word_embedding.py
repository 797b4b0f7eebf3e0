"""Word embeddings over a dataset-local vocabulary.

A dataset's texts use a few thousand of WordPiece's 30,522 ids. Learning a row for each id the
tokenizer knows made the optimizer update (and decay) ~30k rows at every step for nothing, which
dominated DCN/PNN/DIN steps. The news tensors keep the original MiniLM ids (PLMNR/DIRE feed them to
MiniLM); this layer maps them to its own compact rows with one gather.
"""

from __future__ import annotations

import torch
from torch import nn

PAD_ROW = 0  # id 0 (padding) -> a zero row that never learns
UNKNOWN_ROW = 1  # an id outside the dataset's vocabulary (e.g. texts that came after encoding)


def local_rows(word_ids: tuple[int, ...], vocab_size: int) -> torch.Tensor:
    """[vocab_size] original id -> local row: 0 for padding, 1 for unknown, 2.. in word_ids order."""
    if any(i <= 0 or i >= vocab_size for i in word_ids):
        raise ValueError(f"word ids must lie in 1..{vocab_size - 1}")
    if len(set(word_ids)) != len(word_ids):
        raise ValueError("word ids must be distinct")
    rows = torch.full((vocab_size,), UNKNOWN_ROW, dtype=torch.long)
    rows[PAD_ROW] = PAD_ROW
    rows[torch.tensor(word_ids, dtype=torch.long)] = torch.arange(2, len(word_ids) + 2)
    return rows


class WordEmbedding(nn.Module):
    """nn.Embedding(padding_idx=0) over original token ids; with `word_ids`, rows only for those."""

    def __init__(self, vocab_size: int, dim: int, word_ids: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.local = bool(word_ids)
        # saved with the weights, so a checkpoint always reads ids the way it was trained
        self.register_buffer("rows", local_rows(word_ids, vocab_size) if self.local else torch.zeros(0, dtype=torch.long))
        self.table = nn.Embedding(len(word_ids) + 2 if self.local else vocab_size, dim, padding_idx=PAD_ROW)

    @property
    def weight(self) -> torch.Tensor:
        return self.table.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.local:
            ids = self.rows[ids]  # an id beyond the tokenizer's range raises, as nn.Embedding does
        return self.table(ids)

    def weighted_sum(self, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Σ_l weights[n, l] * embedding(ids[n, l]) -> [N, D], without the [N, L, D] token tensor
        (one embedding_bag: forward and backward touch each token's row once)."""
        if self.local:
            ids = self.rows[ids]
        return nn.functional.embedding_bag(ids, self.table.weight, mode="sum",
                                           per_sample_weights=weights.to(self.table.weight.dtype),
                                           padding_idx=PAD_ROW)
