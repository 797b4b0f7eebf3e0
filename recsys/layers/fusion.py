"""Interest fusion (GENRE eq. 1-2), shared by all eight models for the `up` variant.

The interest vector follows the paper in both forms:
    v_i = [POOL(E_topics[topics]); POOL(E_regions[regions])]   (masked average pooling)
Users without a generated profile get one learned "empty interest" vector in place of v_i.

How v_i meets the user vector v_u is the `form`:
- "gated" (default):  v_iu = v_u + g * MLP([v_u; v_i]),  g a learned per-dimension gate starting at 0.
  At initialisation the layer is the identity on v_u, so a profile that carries no signal cannot
  erase what the user encoder learns from history; the model opens the gate only as far as the
  profile helps. Its parameters take no weight decay (recsys/optim.py says why).
- "paper":            v_iu = MLP([v_u; v_i])   (GENRE eq. 2 as written: a fresh ReLU MLP replaces v_u).
  Kept to reproduce the paper. With uninformative profiles it can fall to chance: the demo's NRMS
  went from test AUC 0.583 on `original` to 0.502 on `up`.

The layer draws its initial weights from a random stream of its own (derived from the seed in
force), so building it leaves the global stream where it was: with the same seed, an `up` model's
other layers start from exactly the weights of the `original` model, and with the gate closed the
two are the same function at step 0. Comparing `up` with `original` seed by seed then measures
the fusion, not a reshuffled initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from recsys.catalog import FUSION_FORMS
from recsys.inputs import UserInputs
from recsys.layers.attention import masked_mean

_STREAM_OFFSET = 0x5EED_F05E  # the fusion's own init stream: seed + this


class InterestFusion(nn.Module):
    def __init__(self, num_topics: int, num_regions: int, dim: int, form: str = "gated") -> None:
        super().__init__()
        if form not in FUSION_FORMS:
            raise ValueError(f"interest fusion form {form!r} is unknown; use one of {', '.join(FUSION_FORMS)}")
        self.form = form
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((torch.initial_seed() + _STREAM_OFFSET) % 2**63)
            self.topics = nn.Embedding(num_topics, dim, padding_idx=0)
            self.regions = nn.Embedding(num_regions, dim, padding_idx=0)
            self.empty = nn.Parameter(torch.randn(2 * dim) * 0.1)
            self.mlp = nn.Sequential(nn.Linear(3 * dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        # Exactly zero, not small: the gated form must start as the identity on v_u.
        self.gate = nn.Parameter(torch.zeros(dim)) if form == "gated" else None
        self.dim = dim
        # Behind the closed gate nothing has a loss gradient at first; Adam's L2 term alone would
        # drive the MLP to zero before the gate learns anything (recsys/optim.py), so the gated
        # form keeps its parameters out of the weight decay. The paper form's MLP is on the main
        # path and is decayed like any other weight matrix.
        self.exempt_from_decay = form == "gated"

    def interest(self, user: UserInputs) -> torch.Tensor:
        """v_i [B, 2D] from the profile fields of `user`."""
        if user.topics is None and user.regions is None and user.has_profile is None:
            raise ValueError("interest fusion is on (use_profile) but UserInputs carries no topics, regions or has_profile")
        batch = user.user_index.shape[0]
        topic_vec, topic_any = self._pool(self.topics, user.topics, user.topics_mask, batch)
        region_vec, region_any = self._pool(self.regions, user.regions, user.regions_mask, batch)
        has_profile = user.has_profile if user.has_profile is not None else topic_any | region_any
        pooled = torch.cat([topic_vec, region_vec], dim=-1)
        return torch.where(has_profile.to(torch.bool).unsqueeze(-1), pooled, self.empty.expand_as(pooled))

    def forward(self, user_vector: torch.Tensor, user: UserInputs) -> torch.Tensor:
        """v_u [B, D] -> interest-aware v_iu [B, D]."""
        update = self.mlp(torch.cat([user_vector, self.interest(user)], dim=-1))
        if self.gate is None:
            return update
        return user_vector + self.gate * update

    def _pool(
        self, table: nn.Embedding, ids: torch.Tensor | None, mask: torch.Tensor | None, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        device = table.weight.device
        if ids is None:
            return torch.zeros(batch, self.dim, device=device), torch.zeros(batch, dtype=torch.bool, device=device)
        mask = (ids != 0) if mask is None else mask.to(torch.bool)
        return masked_mean(table(ids), mask), mask.any(dim=1)
