"""The news encoder PLMNR and DIRE share: a language model's frozen lower layers (read from the
layer cache), its top layer(s) tuned with LoRA, attention pooling, a projection to embed_dim.

The language-model input sequence is [text segments; category; subcategory; image] (GENRE
§4.1's order, each part only when it is a configured feature). Text goes through the lower
layers once per catalogue; category, subcategory and the image are learned tokens in the
model's hidden space, joined to the cached text states before the tuned layers, so they stay
trainable while everything below them is cached.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from recsys.catalog import IMAGE_DIM
from recsys.inputs import NewsInputs
from recsys.layer_cache import CacheSpec, LayerCache, TokenSegment, layer_cache
from recsys.layers import AdditiveAttention
from recsys.layers.dropout import Dropout
from recsys.layers.news_embedding import image_token
from recsys.lm_split import SplitEncoder
from recsys.state_table import TokenStateTable

SPECIAL_FIELDS = ("category", "subcategory", "image")
SegmentBuilder = Callable[[NewsInputs], dict[str, TokenSegment]]
HISTORY_TABLES = ("pooled", "states")  # what forward_grad_rows reads history-only rows from


class LayerCachedNewsEncoder(nn.Module):
    def __init__(self, split: SplitEncoder, segments: SegmentBuilder, features: tuple[str, ...], dim: int,
                 num_categories: int, num_subcategories: int, cache_prefix: str, dropout: float) -> None:
        super().__init__()
        hidden = split.hidden_size
        self.split = split
        self.segments = segments
        self.cache_prefix = cache_prefix
        self.special_fields = tuple(f for f in SPECIAL_FIELDS if f in features)
        self.category = nn.Embedding(num_categories, hidden, padding_idx=0) if "category" in features else None
        self.subcategory = nn.Embedding(num_subcategories, hidden, padding_idx=0) if "subcategory" in features else None
        if "image" in features:
            self.image = nn.Linear(IMAGE_DIM, hidden)
            self.image_default = nn.Parameter(torch.randn(hidden) * 0.02)
        else:
            self.image = None
        self.pool = AdditiveAttention(hidden)
        self.dropout = Dropout(dropout)
        self.project = nn.Linear(hidden, dim)
        self._cache: LayerCache | None = None
        self._cache_masks: dict[str, torch.Tensor] = {}
        self._catalogue: NewsInputs | None = None  # what prepare() cached, for refresh_table()
        # [catalogue rows, hidden] pooled top-layer vectors (refresh_table); no state_dict entry:
        # weights-only, it is rebuilt from the weights whenever needed
        self._table: torch.Tensor | None = None
        # the tuned layer's token states of every catalogue row (refresh_state_table), for the
        # same use, through pooling and projection; where prepare() was told to keep the cache
        self._states: TokenStateTable | None = None
        self._scratch_dir: Path | None = None
        # the cache copied onto an accelerator (segment -> (states, masks)), and which one
        self._resident: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._resident_device: torch.device | None = None

    @property
    def cache(self) -> LayerCache | None:
        return self._cache

    def prepare(self, news: NewsInputs, cache_dir: Path | None, batch_size: int = 64) -> LayerCache:
        """Compute (or open) the lower-layer states of every catalogue row; rows of later
        NewsInputs selected from this catalogue (NewsInputs.index) are then read from it."""
        segments = self.segments(news)
        spec = CacheSpec(self.split.fingerprint, self.split.lower_layers, self.split.hidden_size, self.split.cache_dtype)
        device = compute_device()

        def encode(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.split.lower(ids.to(device), mask.to(device))

        self._cache = layer_cache(segments, spec, encode, None if cache_dir is None else Path(cache_dir),
                                  self.cache_prefix, batch_size=batch_size)
        self.split.offload_frozen()
        self._cache_masks = {name: s.mask[:, : self._cache.width(name)].to(torch.bool) for name, s in segments.items()}
        self._resident, self._resident_device = {}, None
        self._catalogue, self._table, self._states = news, None, None
        self._scratch_dir = None if cache_dir is None else Path(cache_dir)
        return self._cache

    def _resident_states(self, device: torch.device) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
        """The whole cache (states, masks) on an accelerator `device`, when it fits there: then a
        step gathers its rows on the device, with no host round trip. On the CPU the memory-
        mapped shards are read directly (None)."""
        if device.type == "cpu" or self._cache is None:
            return None
        if self._resident_device != device:
            self._resident, self._resident_device = {}, device
            if _fits_on(device, self._cache.nbytes):
                for name in self._cache.segments:
                    states = self._cache.gather(name, torch.arange(self._cache.rows)).to(device)
                    self._resident[name] = (states, self._cache_masks[name].to(device))
        return self._resident or None

    def _text_states(self, news: NewsInputs) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(states [N, w, H], mask [N, w]) per text segment, from the cache when it covers these rows."""
        device = self.project.weight.device
        dtype = self.project.weight.dtype
        cache = self._cache
        resident = self._resident_states(device) if news.index is not None else None
        if resident is not None:
            out = []
            for states, masks in resident.values():
                index = news.index.to(device)
                mask = masks[index]
                # the batch's used width without a host sync: padded columns stay, masked out
                out.append((states[index].to(dtype), mask))
            return out
        if cache is not None and news.index is not None:
            out = []
            for name in cache.segments:
                mask = self._cache_masks[name][news.index.cpu()]
                width = _used_width(mask)
                states = cache.gather(name, news.index, columns=width)
                out.append((states.to(device=device, dtype=dtype), mask[:, :width].to(device)))
            return out
        out = []
        for segment in self.segments(news).values():
            width = _used_width(segment.mask)
            ids, mask = segment.ids[:, :width].to(device), segment.mask[:, :width].to(device=device, dtype=torch.bool)
            out.append((self.split.lower(ids, mask).to(dtype), mask))
        return out

    def _special_tokens(self, news: NewsInputs) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for field in self.special_fields:
            if field == "image":
                token = image_token(self.image, self.image_default, news)
                out.append((token.unsqueeze(1), torch.ones(token.shape[0], 1, dtype=torch.bool, device=token.device)))
            else:
                ids = getattr(news, field)
                out.append((getattr(self, field)(ids).unsqueeze(1), (ids != 0).unsqueeze(1)))
        return out

    def forward(self, news: NewsInputs) -> torch.Tensor:  # [N, D]
        return self.project(self.pooled(news))

    def pooled(self, news: NewsInputs) -> torch.Tensor:  # [N, H], before the projection
        top, mask = self.top_states(news)
        return self.pool(self.dropout(top), mask)

    def top_states(self, news: NewsInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """The tuned layer's output [N, W, H] over [text; category; subcategory; image] and the
        mask [N, W] of the positions the pooling reads."""
        text = self._text_states(news)
        parts = text + self._special_tokens(news)
        if not parts:
            raise ValueError("no news feature left to encode")
        states = torch.cat([p[0] for p in parts], dim=1)
        mask = torch.cat([p[1] for p in parts], dim=1)
        # a news with no real token at all (all features empty) still pools to a finite vector
        mask = mask | ~mask.any(dim=1, keepdim=True)
        # the text states come from the frozen layers (cache or lower()): constants for upper()
        return self.split.upper(states, mask, constant_width=sum(p[0].shape[1] for p in text)), mask

    def forward_grad_rows(self, news: NewsInputs, grad_rows: torch.Tensor, table: str | None = None) -> torch.Tensor:  # [N, D]
        """forward(news) in which only rows `grad_rows` (positions into `news`, any shape, repeats
        allowed) are encoded with autograd. The other rows run under torch.no_grad(), so they
        store no activations and get no backward pass; or, with `table` "pooled", their pooled
        vectors are read from the history table (refresh_table(), built on first use) and only
        the projection runs, with gradient; with "states", their top-layer token states are read
        from the state table (refresh_state_table()) and the dropout, attention pooling and
        projection run, with gradient. Each encoded part runs in LENGTH_BUCKETS groups of
        similar text length, each trimmed to its own padded width, so fewer padding tokens go
        through the top layer's matrix multiplies; in one group where the split runs only the
        real tokens anyway (SplitEncoder.packs_tokens: PLMNR's BERT on a CPU). Values equal
        forward()'s up to dropout draws and float rounding (padding is masked out of attention
        and pooling); table rows equal them without dropout as long as the weights are those of
        the last refresh (state rows: up to 16-bit rounding of the stored states)."""
        if table is not None and table not in HISTORY_TABLES:
            raise ValueError(f"history table {table!r} is not one of {', '.join(HISTORY_TABLES)}")
        wanted = torch.zeros(len(news), dtype=torch.bool, device=grad_rows.device)
        wanted[grad_rows.reshape(-1)] = True
        lengths = self._text_lengths(news)
        # a split that runs only the real tokens gains nothing from groups, each costs a layer call
        groups = 1 if self.split.packs_tokens(self.project.weight.device) else LENGTH_BUCKETS
        rows, vectors = [], []
        for part, grad in ((torch.nonzero(wanted).squeeze(1), True), (torch.nonzero(~wanted).squeeze(1), False)):
            if table is not None and not grad:
                if part.numel():
                    rows.append(part)
                    pooled = self.table_rows(news, part) if table == "pooled" else self.state_rows(news, part)
                    vectors.append(self.project(pooled))
                continue
            with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
                for bucket in length_buckets(part, lengths, groups):
                    rows.append(bucket)
                    vectors.append(self(news.select(bucket)))
        stacked = torch.cat(vectors)
        return stacked.new_zeros(len(news), stacked.shape[1]).index_copy(0, torch.cat(rows), stacked)

    def table_rows(self, news: NewsInputs, positions: torch.Tensor) -> torch.Tensor:  # [P, H]
        """The history table's pooled vectors of `news`' rows `positions` (news must be selected
        from the prepared catalogue); the table is built first when there is none."""
        if news.index is None:
            raise ValueError("the history table needs news selected from the prepared catalogue (NewsInputs.index)")
        if self._table is None:
            self.refresh_table()
        table = self._table
        return table[news.index[positions].to(table.device)].to(self.project.weight.dtype)

    def state_rows(self, news: NewsInputs, positions: torch.Tensor) -> torch.Tensor:  # [P, H]
        """`news`' rows `positions` pooled from the state table's token states (with the
        module's dropout and gradient through pooling; news must be selected from the prepared
        catalogue); the table is built first when there is none."""
        if news.index is None:
            raise ValueError("the state table needs news selected from the prepared catalogue (NewsInputs.index)")
        if self._states is None:
            self.refresh_state_table()
        states, mask = self._states.gather(news.index[positions])
        device, dtype = self.project.weight.device, self.project.weight.dtype
        return self.pool(self.dropout(states.to(device=device, dtype=dtype)), mask.to(device))

    def rebuild_table(self, table: str, weights: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Rebuild history table `table` ("pooled": refresh_table, "states": refresh_state_table)
        from the current weights, or from `weights` (this module's trainable parameters by name,
        as an earlier call returned them; the current ones are put back afterwards). Returns
        copies of the trainable parameters it was built from, small next to the model (LoRA,
        special tokens, pooling, projection): what a checkpoint keeps to rebuild the same table."""
        if table not in HISTORY_TABLES:
            raise ValueError(f"history table {table!r} is not one of {', '.join(HISTORY_TABLES)}")
        trainable = {name: p for name, p in self.named_parameters() if p.requires_grad}
        current = None
        if weights is not None:
            if weights.keys() != trainable.keys():
                raise ValueError("the saved history-table weights do not match this model's trainable parameters")
            current = {name: p.detach().clone() for name, p in trainable.items()}
        try:
            with torch.no_grad():
                for name, value in (weights or {}).items():
                    trainable[name].copy_(value)
            (self.refresh_table if table == "pooled" else self.refresh_state_table)()
            return {name: p.detach().clone() for name, p in trainable.items()}
        finally:
            with torch.no_grad():
                for name, value in (current or {}).items():
                    trainable[name].copy_(value)

    def refresh_table(self, batch_size: int = 256) -> None:
        """The history table: the pooled top-layer vector [hidden] of every catalogue news under
        the current weights, without dropout and without gradient (news x hidden float32; e.g.
        MIND-large's 161k news x 384 = 0.25 GB). Runs the top layer once per catalogue news, in
        groups of similar length; the module's training mode is restored afterwards."""
        device = self.project.weight.device
        table = torch.empty(self._catalogue_rows("history table"), self.split.hidden_size, device=device)

        def store(chunk: torch.Tensor, news: NewsInputs) -> None:
            table[chunk.to(device)] = self.pooled(news).float()

        self._over_catalogue(store, batch_size)
        self._table = table

    def refresh_state_table(self, batch_size: int = 256) -> None:
        """The state table: the tuned layer's output token states of every catalogue news under
        the current weights, without dropout and without gradient (recsys/state_table.py: 16-bit,
        memory-mapped scratch beside the layer cache when prepare() had a folder). Allocated on
        the first call, rewritten in place by the later ones; training mode is restored."""
        self._catalogue_rows("state table")
        if self._states is None:
            capacity = self._pooled_positions()
            device = self.project.weight.device
            itemsize = 2  # both storage dtypes are 16-bit
            on_device = device.type != "cpu" and _fits_on(device, int(capacity.sum()) * self.split.hidden_size * itemsize)
            self._states = TokenStateTable(capacity, self.split.hidden_size, self.split.cache_dtype, self._scratch_dir,
                                           device=device if on_device else None, label=self.cache_prefix)
        states = self._states

        def store(chunk: torch.Tensor, news: NewsInputs) -> None:
            top, mask = self.top_states(news)
            states.write(chunk, top, mask)

        self._over_catalogue(store, batch_size)

    def _catalogue_rows(self, what: str) -> int:
        if self._cache is None or self._catalogue is None:
            raise RuntimeError(f"the {what} needs prepare() first (the catalogue's cached lower layers)")
        return self._cache.rows

    def _over_catalogue(self, store: Callable[[torch.Tensor, NewsInputs], None], batch_size: int) -> None:
        """store(rows, news) for every catalogue row, in groups of similar length, in eval mode
        and without gradient; the module's training mode is restored afterwards."""
        device = self.project.weight.device
        total = sum(self._cache_masks[name].sum(dim=1) for name in self._cache.segments)
        order = torch.sort(torch.as_tensor(total), stable=True).indices
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                for chunk in torch.split(order, batch_size):
                    store(chunk, self._catalogue.select(chunk).to(device))
        finally:
            self.train(was_training)

    def _pooled_positions(self) -> torch.Tensor:
        """[catalogue rows] the most positions top_states() can let the pooling read for each
        news: its real text tokens and present special tokens; a news with none pools over every
        position of its batch, at most all the cached text columns and the special tokens."""
        text = [self._cache_masks[name] for name in self._cache.segments]
        counts = sum(mask.sum(dim=1) for mask in text)
        for field in self.special_fields:
            counts = counts + (1 if field == "image" else (getattr(self._catalogue, field).cpu() != 0).long())
        return torch.where(counts > 0, counts, sum(mask.shape[1] for mask in text) + len(self.special_fields))

    def _text_lengths(self, news: NewsInputs) -> torch.Tensor | None:
        """[N] real text tokens of each news (all segments), on news' device; None when its rows
        are not in the cache (no bucketing then)."""
        if self._cache is None or news.index is None:
            return None
        index = news.index.cpu()
        total = sum(self._cache_masks[name][index].sum(dim=1) for name in self._cache.segments)
        return torch.as_tensor(total).to(news.title.device)


LENGTH_BUCKETS = 4  # groups of similar length per training forward of a padded split (forward_grad_rows)


def length_buckets(rows: torch.Tensor, lengths: torch.Tensor | None, buckets: int) -> list[torch.Tensor]:
    """`rows` split into at most `buckets` non-empty groups of about equal size, by ascending
    `lengths[rows]` (the sort is stable); one group when lengths is None."""
    if rows.numel() == 0:
        return []
    if lengths is None or buckets <= 1:
        return [rows]
    order = torch.sort(lengths[rows], stable=True).indices
    return [chunk for chunk in torch.tensor_split(rows[order], buckets) if chunk.numel()]


def compute_device() -> torch.device:
    """Where the frozen layers run while the cache is built: this process's GPU when there is
    one (under accelerate each rank's current device), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


RESIDENT_SHARE = 0.25  # a cache up to this share of the accelerator's free memory is copied onto it


def _fits_on(device: torch.device, nbytes: int) -> bool:
    if device.type == "cuda":
        return nbytes <= RESIDENT_SHARE * torch.cuda.mem_get_info(device)[0]
    return True  # other accelerators (and the meta device of the placement test): no query, keep it there


def _used_width(mask: torch.Tensor) -> int:
    used = torch.nonzero(mask.any(dim=0))
    return int(used.max()) + 1 if used.numel() else 1
