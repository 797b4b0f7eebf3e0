"""The tensors that flow between the data side (features, variants, trainer) and the models.

This is the contract both sides code against; change it only together with both sides.

Index conventions: row 0 of every lookup (news table, users, topics, regions, categories,
tokens) is padding / unknown, so a zero-filled tensor is always a valid "nothing" value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

TEXT_FIELDS = ("title", "abstract", "category", "subcategory")


@dataclass(frozen=True)
class NewsTexts:
    """The raw strings of N news, row-aligned with their NewsInputs (row 0 of a catalogue, the
    padding news, is all empty). Models that read text with their own tokenizer (DIRE's LLM)
    use these instead of decoding the WordPiece ids. Object arrays, so a batch's selection is
    one fancy index, not a Python loop."""

    title: np.ndarray
    abstract: np.ndarray
    category: np.ndarray
    subcategory: np.ndarray

    @classmethod
    def of(cls, title: list[str], abstract: list[str], category: list[str], subcategory: list[str]) -> NewsTexts:
        columns = [np.asarray(list(column), dtype=object) for column in (title, abstract, category, subcategory)]
        if len({len(c) for c in columns}) != 1:
            raise ValueError(f"news text columns disagree on the number of rows: {[len(c) for c in columns]}")
        return cls(*columns)

    def select(self, index: torch.Tensor) -> NewsTexts:
        rows = index.detach().reshape(-1).cpu().numpy()
        return NewsTexts(*(getattr(self, name)[rows] for name in TEXT_FIELDS))

    def row(self, number: int) -> dict[str, str]:
        return {name: str(getattr(self, name)[number]) for name in TEXT_FIELDS}

    def to_lists(self) -> dict[str, list[str]]:
        """Plain lists (what torch.save(weights_only) can store)."""
        return {name: [str(v) for v in getattr(self, name)] for name in TEXT_FIELDS}

    def __len__(self) -> int:
        return int(self.title.shape[0])


@dataclass
class NewsInputs:
    """Features of N news items, aligned on the first dimension.

    title: [N, Lt] WordPiece ids of the embedded MiniLM tokenizer, "[CLS] title [SEP]" then 0-padding
    title_mask: [N, Lt] bool, True on real tokens
    category / subcategory: [N] ids into the dataset's category / subcategory vocabularies
    abstract / abstract_mask: [N, La] like title, or None when the abstract feature is off
    image: [N, 512] float image vectors, or None when the image feature is off
    image_present: [N] bool, False where a news has no image vector (model uses a learned default)
    Which of title/abstract/category/subcategory/image a model should use is in ModelConfig.features.
    index: [N] rows of these items in the catalogue they were selected from, or None for a whole
        catalogue; set by `select`, so a model with a per-catalogue cache (PLMNR, DIRE: frozen
        lower-layer hidden states) can look its rows up.
    texts: the raw title/abstract/category/subcategory strings of these N news (NewsTexts): set
        on a whole catalogue encoded from text, None elsewhere. `select` drops it: a selection
        finds its strings through `index` in its catalogue's texts (a batch would otherwise pay
        for copying, and a DataLoader worker for pickling, thousands of strings per step).
    """

    title: torch.Tensor
    title_mask: torch.Tensor
    category: torch.Tensor
    subcategory: torch.Tensor
    abstract: torch.Tensor | None = None
    abstract_mask: torch.Tensor | None = None
    image: torch.Tensor | None = None
    image_present: torch.Tensor | None = None
    index: torch.Tensor | None = None
    texts: NewsTexts | None = None

    def select(self, index: torch.Tensor) -> NewsInputs:
        """Rows `index` (any shape is flattened) of every present field; `index` of the result
        says which catalogue rows they are (composed when this is itself a selection)."""
        flat = index.reshape(-1)
        picked = NewsInputs(**{name: _take(getattr(self, name), flat) for name in TENSOR_FIELDS if name != "index"})
        picked.index = flat.to(torch.long) if self.index is None else _take(self.index, flat)
        return picked

    def to(self, device: torch.device | str) -> NewsInputs:
        moved = NewsInputs(**{name: _move(getattr(self, name), device) for name in TENSOR_FIELDS})
        moved.texts = self.texts
        return moved

    def __len__(self) -> int:
        return int(self.title.shape[0])


TENSOR_FIELDS = tuple(f.name for f in fields(NewsInputs) if f.name != "texts")


@dataclass
class UserInputs:
    """Per-user side of a batch of B rows (one row per impression sample).

    history_mask: [B, H] bool, True on real history items (histories are right-aligned, most
        recent last; padded positions are False). The history *vectors* are passed separately.
    user_index: [B] id into the user vocabulary (0 = unknown user, e.g. a user not seen in train)
    topics / topics_mask: [B, T] ids of profile interest topics (0 = pad), most relevant first
    regions / regions_mask: [B, R] ids of profile regions (0 = pad)
    has_profile: [B] bool; users without a profile use the learned empty interest vector
    The profile fields are None when the variant has no user profiles (no interest fusion).
    """

    history_mask: torch.Tensor
    user_index: torch.Tensor
    topics: torch.Tensor | None = None
    topics_mask: torch.Tensor | None = None
    regions: torch.Tensor | None = None
    regions_mask: torch.Tensor | None = None
    has_profile: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> UserInputs:
        return UserInputs(**{f.name: _move(getattr(self, f.name), device) for f in fields(self)})

    def select(self, index: torch.Tensor) -> UserInputs:
        """Rows `index` [M] of every present field (a row may repeat)."""
        return UserInputs(**{f.name: _take(getattr(self, f.name), index) for f in fields(self)})


def _take(value: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    return None if value is None else value.index_select(0, index.to(value.device))


def _move(value: torch.Tensor | None, device: torch.device | str) -> torch.Tensor | None:
    return None if value is None else value.to(device)
