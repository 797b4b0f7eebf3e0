"""PLM-NR (Wu et al., SIGIR 2021), the PLMNR-NRMS variant GENRE uses.

News: the embedded all-MiniLM-L6-v2 BERT cut to its first `transformer_layers` layers (GENRE
§4.1 sets 3). The lower ones are frozen, so their hidden states for every title/abstract are
computed once per dataset variant (recsys/layer_cache.py) and only the top layer runs at each
step, tuned through LoRA on the attention query/value projections (peft). Category,
subcategory and image are tokens of the language-model input sequence (joined before the top
layer), and the top layer's states are pooled with additive attention. Users: NRMS's encoder.

Training approximation (ModelConfig.history_grad False): a training step backpropagates through
the tuned top layer and pooling head only for the batch's candidate news; the other news of the
batch (history only) are encoded under torch.no_grad(), so the user encoder still learns from
their vectors but the news encoder gets no gradient through them. A news that is both a
candidate and in some history carries its gradient through both uses. On the synthetic set of
BENCHMARKS.md §2c' about 100 of a batch's ~280 distinct news are candidates; the rest skip the
backward pass and keep no activations.
Evaluation is unchanged (encode_news). Default True: the exact gradient, as before. Either way a
training forward runs the batch's news in groups of similar text length (fewer padding tokens).
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
        when history_grad is on, else the candidates' rows only."""
        rows = torch.arange(len(news), device=candidates.device) if self.config.history_grad else candidates
        return self.news_encoder.forward_grad_rows(news, rows)

    def encode_user(self, history: torch.Tensor, user: UserInputs) -> torch.Tensor:
        return self.fuse(self.user_encoder(history, user.history_mask), user)
