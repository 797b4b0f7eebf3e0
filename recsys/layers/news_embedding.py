"""Turns NewsInputs into the token sequence GENRE feeds every news encoder (paper §4.1):
[title tokens; abstract tokens; category token; subcategory token; image token], each part only
when it is in ModelConfig.features. Category and subcategory are single special tokens (not
tokenized); the 512-d image vector is projected to one token, with a learned default vector for
news without an image."""

from __future__ import annotations

import torch
from torch import nn

from recsys.catalog import IMAGE_DIM
from recsys.catalog import NEWS_FEATURES as SEQUENCE_ORDER  # the catalog's order is the sequence's
from recsys.inputs import NewsInputs
from recsys.layers.word_embedding import WordEmbedding


def image_token(project: nn.Linear, default: torch.Tensor, news: NewsInputs) -> torch.Tensor:
    """Each news item's image token [N, D]: its 512-d vector through `project`, or the learned
    `default` [D] where the item has no image (NewsInputs.image_present False)."""
    if news.image is None:
        raise ValueError("the image feature is on but NewsInputs.image is None")
    projected = project(news.image.to(project.weight.dtype))
    if news.image_present is None:
        return projected
    return torch.where(news.image_present.to(torch.bool).unsqueeze(-1), projected, default.expand_as(projected))


class NewsFeatureEmbedder(nn.Module):
    def __init__(
        self,
        features: tuple[str, ...],
        dim: int,
        vocab_size: int,
        num_categories: int,
        num_subcategories: int,
        word_ids: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.features = tuple(features)
        self.dim = dim
        self.words = WordEmbedding(vocab_size, dim, word_ids) if self.uses_text else None
        self.category = nn.Embedding(num_categories, dim, padding_idx=0) if "category" in features else None
        self.subcategory = nn.Embedding(num_subcategories, dim, padding_idx=0) if "subcategory" in features else None
        if "image" in features:
            self.image = nn.Linear(IMAGE_DIM, dim)
            self.image_default = nn.Parameter(torch.randn(dim) * 0.1)
        else:
            self.image = None

    @property
    def uses_text(self) -> bool:
        return "title" in self.features or "abstract" in self.features

    def text(self, news: NewsInputs, field: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Word embeddings [N, L, D] and mask [N, L] of `title` or `abstract`."""
        ids, mask = getattr(news, field), getattr(news, f"{field}_mask")
        if ids is None or mask is None:
            raise ValueError(f"the {field} feature is on but NewsInputs.{field}/{field}_mask is None")
        assert self.words is not None
        return self.words(ids), mask.to(torch.bool)

    def special(self, news: NewsInputs, field: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One token [N, D] and its mask [N] for category, subcategory or image."""
        if field == "image":
            token = image_token(self.image, self.image_default, news)
            return token, torch.ones(token.shape[0], dtype=torch.bool, device=token.device)
        ids = getattr(news, field)
        return getattr(self, field)(ids), ids != 0

    def mean(self, news: NewsInputs) -> torch.Tensor:
        """masked_mean(*self.sequence(news)) [N, D], computed as sums: text fields through one
        embedding_bag each, so the [N, L, D] token tensor of the ranking models' average-pooling
        news encoder is never built (it and its gradient were most of a DCN/DIN step)."""
        total: torch.Tensor | None = None
        count: torch.Tensor | None = None
        for field in SEQUENCE_ORDER:
            if field not in self.features:
                continue
            if field in ("title", "abstract"):
                ids, mask = getattr(news, field), getattr(news, f"{field}_mask")
                if ids is None or mask is None:
                    raise ValueError(f"the {field} feature is on but NewsInputs.{field}/{field}_mask is None")
                assert self.words is not None
                weights = mask.to(torch.bool).to(self.words.weight.dtype)
                part, n = self.words.weighted_sum(ids, weights), weights.sum(1)
            else:
                token, present = self.special(news, field)
                weights = present.to(token.dtype)
                part, n = token * weights.unsqueeze(-1), weights
            total = part if total is None else total + part
            count = n if count is None else count + n
        if total is None or count is None:
            raise ValueError(f"no news feature left to encode among {self.features}")
        return total / count.clamp_min(1.0).unsqueeze(-1)

    def sequence(self, news: NewsInputs, parts: tuple[str, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Token sequence [N, L, D] and mask [N, L] of the configured features (or of `parts` of them)."""
        wanted = self.features if parts is None else tuple(p for p in parts if p in self.features)
        tokens: list[torch.Tensor] = []
        masks: list[torch.Tensor] = []
        for field in SEQUENCE_ORDER:
            if field not in wanted:
                continue
            if field in ("title", "abstract"):
                emb, mask = self.text(news, field)
            else:
                emb, mask = self.special(news, field)
                emb, mask = emb.unsqueeze(1), mask.unsqueeze(1)
            tokens.append(emb)
            masks.append(mask)
        if not tokens:
            raise ValueError(f"no news feature left to encode among {wanted}")
        return torch.cat(tokens, dim=1), torch.cat(masks, dim=1)
