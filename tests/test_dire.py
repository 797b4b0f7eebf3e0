"""DIRE: the embedded SmolLM2 as a LoRA-tuned news encoder over cached frozen layers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.errors import RecsysError
from recsys.inputs import NewsInputs, NewsTexts
from genre_local.store import open_store
from genre_local.store.variants import fetch_encoded
from recsys.models import ModelConfig, build_model
from recsys.models.dire import LORA, PromptSegments, news_prompt
from recsys.pretrained import minilm_path
from recsys.evaluate import score_split
from recsys.train import RunSettings, Trainer, feature_sizes, make_accelerator, run_training
from recsys.variants import parse_variant
from tests.support_llm import link_prepared_model, prepared_model
from tests.support_models import SIZES, make_news, tiny_config
from tests.support_train import add_all_generations, make_store, one_thread


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The embedded SmolLM2 as a Hugging Face folder, prepared once for all tests (~30 CPU s)."""
    return prepared_model()


@pytest.fixture(scope="module")
def dire(smollm2):
    torch.manual_seed(0)
    return build_model("dire", tiny_config(encoder=str(smollm2), features=("title", "category", "image")), SIZES)


CATEGORY_NAMES = ("", "Sports", "Finance", "Weather", "Health", "Travel", "Music", "Autos", "Food", "Movies", "Kids", "Video")


def with_texts(news: NewsInputs) -> NewsInputs:
    """Raw strings for hand-made news: a cased title naming the row and its category."""
    rows = range(len(news))
    category = [CATEGORY_NAMES[int(c) % len(CATEGORY_NAMES)] for c in news.category]
    news.texts = NewsTexts.of([f"Story {r} about {category[r]} in Paris" for r in rows],
                              [f"Abstract of story {r}." for r in rows], category,
                              [f"sub{int(s)}" for s in news.subcategory])
    return news


def catalogue(count: int = 9, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return with_texts(make_news(torch.randint(1, SIZES.num_categories, (count,), generator=generator), generator))


def test_the_cut_model_equals_the_uncut_one(smollm2) -> None:
    from transformers import LlamaModel

    from recsys.lm_split import LlamaSplit, load_llama_tokenizer

    split = LlamaSplit(smollm2, 2, replace(LORA, dropout=0.0), dtype=torch.float32).eval()
    tokens = load_llama_tokenizer(smollm2)(["News title: storm hits the coast", "hi"], padding=True, return_tensors="pt")
    mask = tokens["attention_mask"].to(torch.bool)
    whole = LlamaModel.from_pretrained(smollm2).eval()
    with torch.no_grad():
        ours = split.upper(split.lower(tokens["input_ids"], mask), mask)
        theirs = whole(**tokens).last_hidden_state
    assert not mask.all()  # the second prompt is right-padded
    assert torch.allclose(ours[mask], theirs[mask], atol=1e-4)


def test_the_authors_lora_recipe_on_the_last_layer_only(dire, smollm2) -> None:
    split = dire.news_encoder.split
    layers = json.loads((smollm2 / "config.json").read_text())["num_hidden_layers"]
    assert len(split.layers) == 1 and split.lower_layers == layers - 1
    trainable = {n: p for n, p in split.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[3] for n in trainable} == {"q_proj", "v_proj"}
    q_proj = split.layers[0].self_attn.q_proj
    assert q_proj.r["default"] == 32 and q_proj.scaling["default"] == 128 / 32
    assert q_proj.lora_dropout["default"].p == 0.1
    # the frozen 29 layers and the word embedding are neither parameters nor checkpointed
    assert not any("embed_tokens" in n for n in dire.state_dict())
    assert sum(p.numel() for p in dire.parameters()) < 10_000_000


def test_cached_states_give_the_direct_vectors_and_are_reused(dire, smollm2, tmp_path) -> None:
    news = catalogue()
    dire.eval()
    with torch.no_grad():
        direct = dire.encode_news(news)
        dire.prepare_news(news, tmp_path)
        cached = dire.encode_news(news.select(torch.arange(len(news))))
    assert torch.allclose(direct, cached, atol=5e-3 * direct.abs().max()), (direct - cached).abs().max()
    manifest = json.loads(next(tmp_path.glob("dire-*/manifest.json")).read_text())
    assert manifest["dtype"] == dire.news_encoder.split.cache_dtype and manifest["layer"] == dire.news_encoder.split.lower_layers
    assert manifest["hidden"] == 576 and list(manifest["segments"]) == ["prompt"]
    again = build_model("dire", tiny_config(encoder=str(smollm2), features=("title", "category", "image")), SIZES)
    again.news_encoder.split.lower = None  # would fail if called: the cache on disk is opened instead
    again.prepare_news(news, tmp_path)
    assert len(list(tmp_path.iterdir())) == 1


def test_the_prompt_reads_the_raw_cased_text_and_category_names(dire) -> None:
    news = catalogue(count=2)
    texts = dire.news_encoder.segments.texts(news)
    category = news.texts.category
    # the dire fixture's features: title, category, image (no subcategory, no abstract)
    assert texts == [f"title: Story {r} about {category[r]} in Paris, category: {category[r]}" for r in range(2)]
    segments = dire.news_encoder.segments
    with pytest.raises(RecsysError, match="raw text"):  # a selection of a catalogue never prepared
        PromptSegments.texts(replace_catalogue(segments, None), news.select(torch.tensor([1])))
    prepared = replace_catalogue(segments, news.texts)  # prepare_news keeps the catalogue's strings
    assert PromptSegments.texts(prepared, news.select(torch.tensor([1, 0]))) == [texts[1], texts[0]]
    assert news_prompt({"abstract": " c\n d ", "title": " A  b ", "category": "", "subcategory": "x"}) == \
        "title: A b, subcategory: x, abstract: c d"
    # the category is a word of the prompt, not a learned token; the image still is one
    assert dire.news_encoder.category is None and dire.news_encoder.special_fields == ("image",)


def replace_catalogue(segments, catalogue):
    import copy

    other = copy.copy(segments)
    other.catalogue = catalogue
    return other


def test_the_prompt_is_truncated_by_the_llm_tokenizer_abstract_first(smollm2) -> None:
    from recsys.models.dire import PromptSegments

    segments = PromptSegments(smollm2, ("title", "abstract"), max_tokens=10)
    news = catalogue(count=1)
    news.texts = NewsTexts.of(["Short title"], [" ".join(["word"] * 50)], ["c"], ["s"])
    ids = segments(news)["prompt"].ids[0]
    assert ids.shape == (10,)
    assert segments.llama.decode(ids).startswith("title: Short title, abstract: word word")


def test_news_without_raw_text_is_refused_clearly(dire) -> None:
    news = catalogue(count=2)
    news.texts = None
    with pytest.raises(RecsysError, match="raw text"):
        dire.encode_news(news)


def test_encoder_mistakes_are_user_errors(smollm2, tmp_path) -> None:
    with pytest.raises(RecsysError, match="encoder"):
        build_model("dire", tiny_config(), SIZES)
    with pytest.raises(RecsysError, match="config.json"):
        build_model("dire", tiny_config(encoder=str(tmp_path)), SIZES)
    with pytest.raises(RecsysError, match="bert"):
        build_model("dire", tiny_config(encoder=str(minilm_path())), SIZES)
    with pytest.raises(RecsysError, match="title or abstract"):
        build_model("dire", tiny_config(encoder=str(smollm2), features=("category",)), SIZES)


@pytest.fixture(scope="module")
def rich_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dire-rich")
    db = make_store(folder / "s.duckdb", users=12, news_per_cat=6)
    add_all_generations(db, users=12)
    return db


def run_settings(smollm2: Path, **changes) -> RunSettings:
    base = RunSettings(
        model="dire", seed=1, epochs=1, batch_size=16, eval_batch_size=64, lr=1e-3, weight_decay=0.01,
        negatives=4, patience=2, history_len=10,
        model_config=ModelConfig(embed_dim=16, num_heads=2, history_len=10, title_len=12, encoder=str(smollm2),
                                 features=("title", "abstract", "category", "subcategory"), use_profile=True),
    )
    return replace(base, **changes)


class KilledAfterTwoSteps(Trainer):
    def pause_requested(self) -> bool:
        return self.steps_taken >= 2


@pytest.mark.parametrize("variant", ["ns+up+ng", "chain"])
def test_trains_evaluates_and_resumes_on_enriched_variants(rich_data, smollm2, tmp_path, variant) -> None:
    with open_store(rich_data) as store:
        data, _ = fetch_encoded(store.conn, "tiny", parse_variant(variant), ("title", "abstract", "category", "subcategory"),
                                12, 8, None, None)
    accelerator = make_accelerator()
    base = run_settings(smollm2, layer_cache_dir=tmp_path / "layers", checkpoint_every=2)
    base = replace(base, model_config=replace(base.model_config, use_profile=parse_variant(variant).up))
    plain = run_training(accelerator, data, replace(base, checkpoint_dir=tmp_path / "a"))
    assert 0.0 <= plain.metrics["test"]["all"]["auc"] <= 1.0
    cut = KilledAfterTwoSteps(accelerator, data, replace(base, checkpoint_dir=tmp_path / "b")).run()
    assert cut.interrupted
    resumed = run_training(accelerator, data, replace(base, checkpoint_dir=tmp_path / "b", resume=True))
    assert resumed.metrics == plain.metrics
    assert len(list((tmp_path / "layers").iterdir())) == 1  # one cache, reused by all three runs


def test_encoded_data_carries_the_variants_raw_strings(rich_data, tmp_path) -> None:
    from recsys.data import load_encoded
    from recsys.features import load_tokenizer, tokenize

    with open_store(rich_data) as store:
        original, _ = fetch_encoded(store.conn, "tiny", parse_variant("original"), ("title", "category"), 12, 8, None,
                                    tmp_path)
        enhanced, _ = fetch_encoded(store.conn, "tiny", parse_variant("ns"), ("title", "category"), 12, 8, None, None)
    texts = original.news.texts
    assert texts is not None and len(texts) == len(original.news) == len(original.news_ids) + 1
    assert texts.row(0) == {"title": "", "abstract": "", "category": "", "subcategory": ""}
    assert all(texts.category[1:]) and all(texts.title[1:])
    ids, _ = tokenize(load_tokenizer(), list(texts.title[1:]), 12)
    assert torch.equal(ids, original.news.title[1:])  # the strings are the ones the tensors came from
    assert list(enhanced.news.texts.title) != list(texts.title)  # a variant's own (enhanced) titles
    reloaded = load_encoded(next(tmp_path.glob("*.pt")))  # the encoded cache keeps them
    assert reloaded.news.texts.to_lists() == texts.to_lists()
    picked = reloaded.news.texts.select(torch.tensor([2, 1]))
    assert list(picked.title) == [texts.title[2], texts.title[1]]
    assert reloaded.news.select(torch.tensor([2, 1])).texts is None  # batches carry rows, not strings


def test_fast_scores_equal_naive_scores(rich_data, smollm2, tmp_path) -> None:
    features = ("title", "abstract", "category", "subcategory")
    with open_store(rich_data) as store:
        data, _ = fetch_encoded(store.conn, "tiny", parse_variant("ns+up+ng"), features, 12, 8, None, None)
    torch.manual_seed(0)
    config = ModelConfig(embed_dim=16, num_heads=2, history_len=6, title_len=12, abstract_len=8, features=features,
                         use_profile=True, encoder=str(smollm2))
    model = build_model("dire", config, feature_sizes(data))
    model.prepare_news(data.news, tmp_path)
    split = data.split("dev")
    fast = score_split(model, data, split, history_len=6, batch_size=7, fast=True)
    naive = score_split(model, data, split, history_len=6, batch_size=5, fast=False)
    for a, b in zip(fast.scores, naive.scores, strict=True):
        torch.testing.assert_close(torch.from_numpy(a), torch.from_numpy(b), rtol=1e-5, atol=1e-5)
    assert np.concatenate(fast.scores).std() > 0  # not trivially constant


# -- through the CLI: train and report ------------------------------------------------------------

SMALL = """
[train]
embed_dim = 16
num_heads = 2
history_len = 8
title_len = 12
batch_size = 32
epochs = 1
threads = 1
"""


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """A tiny store whose models folder holds the prepared SmolLM2 (so `llama` needs no conversion)."""
    folder = tmp_path_factory.mktemp("dire-cli")
    db = make_store(folder / "s.duckdb", users=12, news_per_cat=6)
    add_all_generations(db, users=12)
    (folder / "genre.toml").write_text(SMALL)
    link_prepared_model(folder / "models")
    return db, folder / "genre.toml"


def cli(env, *args: str):
    from typer.testing import CliRunner

    from genre_local.cli import app

    db, config = env
    return CliRunner().invoke(app, ["--db", str(db), "--config", str(config), *args])


def test_cli_trains_dire_with_the_embedded_encoder_and_reports_it(cli_env, tmp_path) -> None:
    result = cli(cli_env, "train", "--model", "dire", "--dataset", "tiny", "--variant", "ns+up+ng", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["model"] == "dire" and 0.0 <= payload["metrics"]["auc"] <= 1.0
    db = cli_env[0]
    assert len(list((db.parent / ".genre-cache" / "layers").glob("dire-*/manifest.json"))) == 1
    with open_store(db) as store:
        config = json.loads(store.conn.execute("SELECT config FROM runs WHERE model = 'dire'").fetchall()[0][0])
    assert config["encoder"].endswith("smollm2-135m-instruct")
    report = cli(cli_env, "report", "--dataset", "tiny", "--out", str(tmp_path / "report"), "--no-plots")
    assert report.exit_code == 0, report.output
    assert "dire" in report.stdout


@pytest.mark.parametrize(("args", "needle"), [
    (["--model", "nrms", "--encoder", "llama"], "--encoder llama"),
    (["--model", "dire", "--encoder", "/nonexistent/llm"], "/nonexistent/llm"),
])
def test_cli_encoder_mistakes_are_one_line_exit_2(cli_env, args, needle) -> None:
    result = cli(cli_env, "train", "--dataset", "tiny", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines


@pytest.fixture(scope="module")
def dire_float32(smollm2):
    """DIRE with float32 frozen layers whatever the CPU: in bfloat16 the frozen layers' results
    depend on the batch's shape (AMX kernels: 0.6 % of a news vector between one news and nine),
    which would hide the position error the batch test looks for."""
    import recsys.lm_split

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recsys.lm_split, "frozen_dtype", lambda *args, **kwargs: torch.float32)
        torch.manual_seed(0)
        return build_model("dire", tiny_config(encoder=str(smollm2), features=("title", "category", "image")), SIZES)


def test_news_vectors_do_not_depend_on_the_batch(dire_float32) -> None:
    """Category/image tokens follow the padded text: their positions must not be the batch's width."""
    dire = dire_float32
    news = catalogue(count=9, seed=3)
    # titles of 1..9 extra words, so the batch pads the shorter ones
    texts = news.texts.to_lists()
    texts["title"] = [f"{title}{' and more' * row}" for row, title in enumerate(texts["title"])]
    news.texts = NewsTexts.of(texts["title"], texts["abstract"], texts["category"], texts["subcategory"])

    def unindexed(rows: torch.Tensor):
        picked = news.select(rows)
        picked.index = None  # not from a prepared catalogue: the direct path, with its own strings
        picked.texts = news.texts.select(rows)
        return picked

    dire.eval()
    with torch.no_grad():
        direct_alone = torch.cat([dire.encode_news(unindexed(torch.tensor([i]))) for i in range(len(news))])
        direct_together = dire.encode_news(news)
        dire.prepare_news(news, None)
        cached_alone = torch.cat([dire.encode_news(news.select(torch.tensor([i]))) for i in range(len(news))])
        cached_together = dire.encode_news(news.select(torch.arange(len(news))))
    torch.testing.assert_close(direct_alone, direct_together, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cached_alone, cached_together, rtol=1e-4, atol=1e-5)


# -- memory and devices -----------------------------------------------------------------------------


@pytest.mark.parametrize(("device", "fp32_gb", "free_gb", "flags", "expected"), [
    ("cuda", 28, 80, frozenset(), torch.bfloat16),
    ("cpu", 28, 64, frozenset({"avx512_bf16"}), torch.bfloat16),
    ("cpu", 0.5, 16, frozenset({"avx2"}), torch.float32),  # emulated bf16 is slower: fp32 while it fits
    ("cpu", 28, 24, frozenset({"avx2"}), torch.bfloat16),  # a 7B model on a 24 GB machine: 14 GB, not 28
])
def test_the_frozen_layers_dtype(device, fp32_gb, free_gb, flags, expected) -> None:
    from recsys.lm_split import frozen_dtype

    assert frozen_dtype(device, int(fp32_gb * 2**30), int(free_gb * 2**30), flags=flags) == expected
    assert frozen_dtype("cuda", 1, 2**40, cuda_bf16=False) == torch.float16


def test_frozen_layers_load_in_bf16_the_tuned_top_stays_fp32(smollm2, tmp_path) -> None:
    from recsys.lm_split import LlamaSplit

    said = []
    split = LlamaSplit(smollm2, 1, replace(LORA, dropout=0.0), dtype=torch.bfloat16, announce=said.append)
    frozen = split._frozen()
    assert {p.dtype for p in frozen.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in split.parameters()} == {torch.float32}  # tuned layer, LoRA, final norm
    assert split.cache_dtype == "bfloat16"
    # announced before loading: SmolLM2-135M's 29 frozen layers plus embeddings in bf16 are ~0.25 GiB
    assert len(said) == 1 and "bfloat16" in said[0] and "0.2" in said[0].split("about ")[1][:4], said
    full = LlamaSplit(smollm2, 1, replace(LORA, dropout=0.0), dtype=torch.float32, announce=said.append).eval()
    tokens = split_tokens(smollm2)
    mask = tokens["attention_mask"].to(torch.bool)
    with torch.no_grad():
        low = split.eval().upper(split.lower(tokens["input_ids"], mask).float(), mask)
        high = full.upper(full.lower(tokens["input_ids"], mask), mask)
    assert low.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(low[mask], high[mask], dim=-1)
    assert cosine.min() > 0.95, cosine.min()


def split_tokens(folder: Path):
    from recsys.lm_split import load_llama_tokenizer

    return load_llama_tokenizer(folder)(["title: Storm hits the coast, category: weather", "hi"], padding=True,
                                        return_tensors="pt")


def test_a_step_on_an_accelerator_device_never_leaves_it(smollm2) -> None:
    """The model and the batch on the meta device (no data, no host copies possible): the cached
    path must gather its rows where the model is, with no .cpu()/.numpy() on the way."""
    model = build_model("dire", tiny_config(encoder=str(smollm2), features=("title", "category", "image")), SIZES)
    news = catalogue(count=6, seed=4)
    model.prepare_news(news, None)  # built on the CPU, as each rank does before training
    model.to("meta")
    batch = news.select(torch.tensor([3, 1, 1, 5])).to("meta")
    vectors = model.encode_news(batch)
    assert vectors.device.type == "meta" and vectors.shape == (4, model.config.embed_dim)
