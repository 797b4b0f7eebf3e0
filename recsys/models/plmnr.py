"""PLM-NR (Wu et al., SIGIR 2021), the PLMNR-NRMS variant GENRE uses.

News: the embedded all-MiniLM-L6-v2 BERT, cut to its first `transformer_layers` layers (GENRE
§4.1 sets 3 layers for PLMNR), fine-tuned only through LoRA adapters (peft) on the attention
query/value projections; token states are mean-pooled (MiniLM's own sentence pooling) and
projected to embed_dim. Category, subcategory and image are extra views, combined with the text
by additive attention. Users: the NRMS user encoder.
"""

from __future__ import annotations

import torch
from torch import nn

from recsys.inputs import NewsInputs, UserInputs
from recsys.layers import AdditiveAttention, NewsFeatureEmbedder, masked_mean
from recsys.models.base import FeatureSizes, MatchingModel, ModelConfig
from recsys.models.nrms import NRMSUserEncoder
from recsys.pretrained import load_minilm_encoder

TEXT_FIELDS = ("title", "abstract")


class PLMNR(MatchingModel):
    name = "plmnr"

    def __init__(self, config: ModelConfig, sizes: FeatureSizes) -> None:
        super().__init__(config, sizes)
        from peft import LoraConfig, get_peft_model

        dim = config.embed_dim
        bert = load_minilm_encoder(num_layers=config.transformer_layers)
        if sizes.vocab_size > bert.config.vocab_size:
            raise ValueError(
                f"vocab_size {sizes.vocab_size} exceeds MiniLM's {bert.config.vocab_size}: "
                "PLMNR needs titles tokenized with the embedded MiniLM tokenizer"
            )
        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=2 * config.lora_rank,
            lora_dropout=config.dropout,
            target_modules=["query", "value"],
            bias="none",
        )
        self.plm = get_peft_model(bert, lora)
        self.project = nn.Linear(bert.config.hidden_size, dim)
        self.text_fields = tuple(f for f in TEXT_FIELDS if config.uses(f))
        self.special_fields = tuple(f for f in config.features if f not in TEXT_FIELDS)
        self.embedder = NewsFeatureEmbedder(
            self.special_fields, dim, sizes.vocab_size, sizes.num_categories, sizes.num_subcategories
        )
        self.view_pool = AdditiveAttention(dim)
        self.user_encoder = NRMSUserEncoder(config)

    def text_vector(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[N, L] token ids -> [N, D]; trailing columns that are padding in every row are dropped
        first (texts are right-padded), which saves most of the BERT cost on short titles."""
        mask = mask.to(torch.bool)
        used = torch.nonzero(mask.any(dim=0))
        width = int(used.max()) + 1 if used.numel() else 1
        ids, mask = ids[:, :width], mask[:, :width]
        states = self.plm(input_ids=ids, attention_mask=mask.to(torch.long)).last_hidden_state
        return self.project(masked_mean(states, mask))

    def encode_news(self, news: NewsInputs) -> torch.Tensor:
        views = []
        for field in self.text_fields:
            ids, mask = getattr(news, field), getattr(news, f"{field}_mask")
            if ids is None or mask is None:
                raise ValueError(f"the {field} feature is on but NewsInputs.{field}/{field}_mask is None")
            views.append(self.text_vector(ids, mask))
        for field in self.special_fields:
            views.append(self.embedder.special(news, field)[0])
        return self.view_pool(torch.stack(views, dim=1))

    def encode_user(self, history: torch.Tensor, user: UserInputs) -> torch.Tensor:
        return self.fuse(self.user_encoder(history, user.history_mask), user)
