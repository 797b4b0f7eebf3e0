"""PLM-NR (Wu et al., SIGIR 2021), the PLMNR-NRMS variant GENRE uses.

News: the embedded all-MiniLM-L6-v2 BERT cut to its first `transformer_layers` layers (GENRE
§4.1 sets 3). The lower ones are frozen, so their hidden states for every title/abstract are
computed once per dataset variant (recsys/layer_cache.py) and only the top layer runs at each
step, tuned through LoRA on the attention query/value projections (peft). Category,
subcategory and image are tokens of the language-model input sequence (joined before the top
layer), and the top layer's states are pooled with additive attention. Users: NRMS's encoder.

Training approximations (ModelConfig.plmnr_history; default "exact", the true gradient): a
training step backpropagates through the tuned top layer and pooling head only for the batch's
candidate news. The other news of the batch (history only) are
- "no-grad": encoded under torch.no_grad(), so the user encoder still learns from their vectors
  but the news encoder gets no gradient through them;
- "cached": not encoded at all. Their pooled top-layer vectors come from a table of the whole
  catalogue (LayerCachedNewsEncoder.refresh_table), rebuilt at each epoch start from the weights
  of that moment without dropout, and only the projection to embed_dim runs on them, with
  gradient. Within an epoch the table is stale: it lags LoRA, the category tokens and the
  attention pooling by up to one epoch of steps (the projection is always current);
- "states": as "cached", but the table holds the top layer's token states (16-bit,
  recsys/state_table.py; refresh_state_table), so their dropout, attention pooling and
  projection run at every step with gradient: only LoRA and the category/subcategory/image
  tokens get nothing from history rows, and only they lag. On BENCHMARKS.md §2c''s synthetic
  set it matched "exact" within 0.01 AUC over 40 pre-registered seeds at half its CPU per run
  (session 10 there), where "cached" lost 0.013.
A news that is both a candidate and in some history carries its gradient through both uses. On
the synthetic set of BENCHMARKS.md §2c' about 100 of a batch's ~280 distinct news are candidates.
Evaluation is the same for all four (encode_news: every news afresh, never a table). On a
CPU the tuned layer runs only the real tokens (BertSplit.upper_packed); elsewhere a training
forward runs the encoded news in groups of similar text length (fewer padding tokens).
"""

from __future__ import annotations

from pathlib import Path

import torch

from recsys.inputs import NewsInputs, UserInputs
from recsys.layer_cache import TokenSegment
from recsys.lm_split import BertSplit, LoraRecipe
from recsys.models.base import FeatureSizes, MatchingModel, ModelConfig
from recsys.models.lm_news import LayerCachedNewsEncoder
from recsys.models.nrms import NRMSUserEncoder
from recsys.pretrained import minilm_path

TEXT_FIELDS = ("title", "abstract")
TUNED_LAYERS = 1  # the recipe: lower layers frozen and cached, the top one tuned
HISTORY_TABLE = {"cached": "pooled", "states": "states"}  # plmnr_history -> the table history rows read


def wordpiece_segments(fields: tuple[str, ...]):
    """NewsInputs -> its title/abstract WordPiece ids as layer-cache segments."""

    def segments(news: NewsInputs) -> dict[str, TokenSegment]:
        out = {}
        for field in fields:
            ids, mask = getattr(news, field), getattr(news, f"{field}_mask")
            if ids is None or mask is None:
                raise ValueError(f"the {field} feature is on but NewsInputs.{field}/{field}_mask is None")
            out[field] = TokenSegment(ids, mask.to(torch.bool))
        return out

    return segments


class PLMNR(MatchingModel):
    name = "plmnr"

    def __init__(self, config: ModelConfig, sizes: FeatureSizes) -> None:
        super().__init__(config, sizes)
        lora = LoraRecipe(rank=config.lora_rank, alpha=2 * config.lora_rank, dropout=config.dropout)
        split = BertSplit(minilm_path(), config.transformer_layers, TUNED_LAYERS, lora)
        if sizes.vocab_size > split.vocab_size:
            raise ValueError(
                f"vocab_size {sizes.vocab_size} exceeds MiniLM's {split.vocab_size}: "
                "PLMNR needs titles tokenized with the embedded MiniLM tokenizer"
            )
        text_fields = tuple(f for f in TEXT_FIELDS if config.uses(f))
        self.news_encoder = LayerCachedNewsEncoder(
            split, wordpiece_segments(text_fields), config.features, config.embed_dim,
            sizes.num_categories, sizes.num_subcategories, cache_prefix="plmnr-minilm", dropout=config.dropout,
        )
        self.user_encoder = NRMSUserEncoder(config)

    def prepare_news(self, news: NewsInputs, cache_dir: Path | None = None) -> None:
        self.news_encoder.prepare(news, cache_dir)

    def encode_news(self, news: NewsInputs) -> torch.Tensor:
        return self.news_encoder(news)

    def encode_step_news(self, news: NewsInputs, candidates: torch.Tensor) -> torch.Tensor:
        """Length-grouped (LayerCachedNewsEncoder.forward_grad_rows): every row with gradient
        when plmnr_history is "exact", else the candidates' rows only."""
        history = self.config.plmnr_history
        rows = torch.arange(len(news), device=candidates.device) if history == "exact" else candidates
        return self.news_encoder.forward_grad_rows(news, rows, table=HISTORY_TABLE.get(history))

    def start_epoch(self, table_weights: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor] | None:
        table = HISTORY_TABLE.get(self.config.plmnr_history)
        if table is None or self.news_encoder.cache is None:
            return None
        return self.news_encoder.rebuild_table(table, table_weights)

    def encode_user(self, history: torch.Tensor, user: UserInputs) -> torch.Tensor:
        return self.fuse(self.user_encoder(history, user.history_mask), user)
