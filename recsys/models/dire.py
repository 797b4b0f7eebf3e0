"""DIRE: the GENRE authors' follow-up (ONCE, WSDM 2024), a LLaMA-family LLM as the news encoder.

The LLM reads each news as a short natural-language prompt ("title: ..., category: ...,
subcategory: ..., abstract: ..." from the raw strings, NewsInputs.texts); the frozen layers
load in bf16 where that is native (recsys.lm_split.frozen_dtype);
all its layers but the last are frozen, and their hidden states are computed once per dataset
variant (recsys/layer_cache.py); the last layer is tuned with LoRA (their recipe: r 32, alpha
128, dropout 0.1 on q_proj/v_proj; lr 1e-4 is the trainer's --lr). The image joins the sequence
as a learned token before the tuned layer, the last hidden states are
pooled with additive attention into the news vector, and NRMS's user encoder sits on top.

The encoder is a local Hugging Face folder (ModelConfig.encoder); resolving an alias such as
the embedded SmolLM2 (`llama`) to one is the application's job, not this library's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from recsys.errors import RecsysError
from recsys.inputs import NewsInputs, NewsTexts, UserInputs
from recsys.layer_cache import TokenSegment
from recsys.lm_split import LlamaSplit, LoraRecipe, load_llama_tokenizer
from recsys.models.base import FeatureSizes, MatchingModel, ModelConfig
from recsys.models.lm_news import LayerCachedNewsEncoder, compute_device
from recsys.models.nrms import NRMSUserEncoder

LORA = LoraRecipe(rank=32, alpha=128, dropout=0.1)
TUNED_LAYERS = 1
# Prompt order: title, then the category names, the abstract last, so the tokenizer's truncation
# shortens the abstract first.
PROMPT_FIELDS = ("title", "category", "subcategory", "abstract")
CATEGORY_TOKENS = 8  # token budget of one category name in the prompt
PROMPT_FRAME_TOKENS = 12  # the labels and separators around the texts


def news_prompt(parts: dict[str, str]) -> str:
    """The prompt the LLM reads for one news, e.g. "title: Storm hits the coast, category: news,
    abstract: ..." (the GENRE/ONCE style), from its non-empty fields in PROMPT_FIELDS order."""
    return ", ".join(f"{field}: {' '.join(parts[field].split())}" for field in PROMPT_FIELDS
                     if field in parts and parts[field].strip())


def prompt_tokens(config: ModelConfig, fields: tuple[str, ...]) -> int:
    """The prompt's token budget: the configured title/abstract lengths, the category names, the frame."""
    budget = {"title": config.title_len, "abstract": config.abstract_len,
              "category": CATEGORY_TOKENS, "subcategory": CATEGORY_TOKENS}
    return sum(budget[f] for f in fields) + PROMPT_FRAME_TOKENS


class PromptSegments:
    """NewsInputs -> one 'prompt' segment of LLaMA token ids, from the news' raw strings
    (NewsInputs.texts: the variant's title as stored, cased, and the category names), tokenized
    and truncated by the LLM's own tokenizer."""

    def __init__(self, folder: Path, fields: tuple[str, ...], max_tokens: int) -> None:
        self.fields, self.max_tokens = fields, max_tokens
        self.llama = load_llama_tokenizer(folder)
        self.catalogue: NewsTexts | None = None  # the prepared catalogue's strings, for its selections

    def texts(self, news: NewsInputs) -> list[str]:
        source = news.texts
        if source is None and news.index is not None and self.catalogue is not None:
            source = self.catalogue.select(news.index)
        if source is None:
            raise RecsysError(
                "DIRE reads the news' raw text, which these NewsInputs do not carry (NewsInputs.texts, or rows "
                "of a prepared catalogue); encode the dataset with recsys.data.encode_variant (an older encoded "
                "cache is rebuilt)"
            )
        columns = {field: getattr(source, field) for field in self.fields}
        return [news_prompt({f: str(columns[f][row]) for f in self.fields}) for row in range(len(news))]

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
        if not (config.uses("title") or config.uses("abstract")):
            raise RecsysError(
                f"features {','.join(config.features)}: DIRE reads the news text; include title or abstract"
            )
        # category names are words of the prompt, not learned tokens; the image stays a token
        prompt_fields = tuple(f for f in PROMPT_FIELDS if config.uses(f))
        token_features = tuple(f for f in config.features if f not in prompt_fields)
        split = LlamaSplit(folder, TUNED_LAYERS, LORA, device_type=compute_device().type)
        self.news_encoder = LayerCachedNewsEncoder(
            split, PromptSegments(folder, prompt_fields, prompt_tokens(config, prompt_fields)), token_features,
            config.embed_dim, sizes.num_categories, sizes.num_subcategories, cache_prefix="dire", dropout=config.dropout,
        )
        self.user_encoder = NRMSUserEncoder(config)

    def prepare_news(self, news: NewsInputs, cache_dir: Path | None = None) -> None:
        self.news_encoder.segments.catalogue = news.texts
        self.news_encoder.prepare(news, cache_dir)

    def encode_news(self, news: NewsInputs) -> torch.Tensor:
        return self.news_encoder(news)

    def encode_user(self, history: torch.Tensor, user: UserInputs) -> torch.Tensor:
        return self.fuse(self.user_encoder(history, user.history_mask), user)
