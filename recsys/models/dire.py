"""DIRE: the GENRE authors' follow-up (ONCE, WSDM 2024), a LLaMA-family LLM as the news encoder.

The LLM reads each news as a short natural-language prompt ("News title: ... Abstract: ...");
all its layers but the last are frozen, and their hidden states are computed once per dataset
variant (recsys/layer_cache.py); the last layer is tuned with LoRA (their recipe: r 32, alpha
128, dropout 0.1 on q_proj/v_proj; lr 1e-4 is the trainer's --lr). Category, subcategory and
image join the sequence as learned tokens before the tuned layer, the last hidden states are
pooled with additive attention into the news vector, and NRMS's user encoder sits on top.

The encoder is a local Hugging Face folder (ModelConfig.encoder); resolving an alias such as
the embedded SmolLM2 (`llama`) to one is the application's job, not this library's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from recsys.errors import RecsysError
from recsys.inputs import NewsInputs, UserInputs
from recsys.layer_cache import TokenSegment
from recsys.lm_split import LlamaSplit, LoraRecipe, load_llama_tokenizer
from recsys.models.base import FeatureSizes, MatchingModel, ModelConfig
from recsys.models.lm_news import LayerCachedNewsEncoder
from recsys.models.nrms import NRMSUserEncoder

LORA = LoraRecipe(rank=32, alpha=128, dropout=0.1)
TUNED_LAYERS = 1
PROMPT_LABELS = {"title": "News title", "abstract": "Abstract"}
PROMPT_FRAME_TOKENS = 8  # the labels and separators around the texts


def news_prompt(parts: dict[str, str]) -> str:
    """The prompt the LLM reads for one news: its labeled text fields, title first."""
    return "\n".join(f"{PROMPT_LABELS[field]}: {text.strip()}" for field, text in parts.items())


class PromptSegments:
    """NewsInputs -> one 'prompt' segment of LLaMA token ids.

    The tensorized data carries MiniLM WordPiece ids, so the texts are decoded from them first
    (lower-cased, as the WordPiece vocabulary is); the result is the same for a news whether
    it is encoded alone or with its catalogue, which keeps the cache and the direct path equal."""

    def __init__(self, folder: Path, fields: tuple[str, ...], max_tokens: int) -> None:
        from recsys.features import load_tokenizer

        self.fields, self.max_tokens = fields, max_tokens
        self.wordpiece = load_tokenizer()
        self.llama = load_llama_tokenizer(folder)

    def texts(self, news: NewsInputs) -> list[str]:
        decoded = {}
        for field in self.fields:
            ids = getattr(news, field)
            if ids is None:
                raise ValueError(f"the {field} feature is on but NewsInputs.{field} is None")
            decoded[field] = self.wordpiece.batch_decode(ids.cpu().tolist(), skip_special_tokens=True)
        return [news_prompt({f: decoded[f][row] for f in self.fields}) for row in range(len(news))]

    def __call__(self, news: NewsInputs) -> dict[str, TokenSegment]:
        encoded = self.llama(self.texts(news), padding="max_length", truncation=True, max_length=self.max_tokens,
                             return_tensors="pt")
        return {"prompt": TokenSegment(encoded["input_ids"], encoded["attention_mask"].to(torch.bool))}


class DIRE(MatchingModel):
    name = "dire"

    def __init__(self, config: ModelConfig, sizes: FeatureSizes) -> None:
        super().__init__(config, sizes)
        if not config.encoder:
            raise RecsysError("DIRE needs its news encoder: set encoder to a local LLaMA-family Hugging Face folder")
        folder = Path(config.encoder).expanduser()
        text_fields = tuple(f for f in PROMPT_LABELS if config.uses(f))
        if not text_fields:
            raise RecsysError(
                f"features {','.join(config.features)}: DIRE reads the news text; include title or abstract"
            )
        split = LlamaSplit(folder, TUNED_LAYERS, LORA)
        max_tokens = config.title_len + (config.abstract_len if "abstract" in text_fields else 0) + PROMPT_FRAME_TOKENS
        self.news_encoder = LayerCachedNewsEncoder(
            split, PromptSegments(folder, text_fields, max_tokens), config.features, config.embed_dim,
            sizes.num_categories, sizes.num_subcategories, cache_prefix="dire", dropout=config.dropout,
        )
        self.user_encoder = NRMSUserEncoder(config)

    def prepare_news(self, news: NewsInputs, cache_dir: Path | None = None) -> None:
        self.news_encoder.prepare(news, cache_dir)

    def encode_news(self, news: NewsInputs) -> torch.Tensor:
        return self.news_encoder(news)

    def encode_user(self, history: torch.Tensor, user: UserInputs) -> torch.Tensor:
        return self.fuse(self.user_encoder(history, user.history_mask), user)
