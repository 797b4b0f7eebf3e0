"""The dataset-local word vocabulary: consistent mapping, unknown ids, the cache, PLMNR's ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from genre_local.store import open_store
from genre_local.store.variants import fetch_encoded
from recsys import features as feats
from recsys.data import used_word_ids
from recsys.inputs import NewsInputs
from recsys.layers.word_embedding import PAD_ROW, UNKNOWN_ROW, WordEmbedding, local_rows
from recsys.models import ModelConfig, build_model
from recsys.train import feature_sizes
from recsys.variants import parse_variant
from tests.support_train import make_store


def test_local_rows_pad_unknown_and_each_id_its_own_row() -> None:
    rows = local_rows((7, 3, 11), 20)
    assert rows.shape == (20,)
    assert rows[0] == PAD_ROW
    assert [int(rows[i]) for i in (7, 3, 11)] == [2, 3, 4]
    assert all(int(rows[i]) == UNKNOWN_ROW for i in range(1, 20) if i not in (3, 7, 11))


@pytest.mark.parametrize("bad", [(0, 2), (5, 20), (-1,), (4, 4)])
def test_local_rows_refuses_padding_out_of_range_and_repeated_ids(bad) -> None:
    with pytest.raises(ValueError):
        local_rows(bad, 20)


def test_word_embedding_maps_the_same_token_to_the_same_vector_and_unknown_to_one_row() -> None:
    torch.manual_seed(0)
    emb = WordEmbedding(100, 8, word_ids=(10, 20, 30))
    assert emb.weight.shape == (5, 8)  # padding + unknown + 3 words, not 100 rows
    ids = torch.tensor([[10, 20, 10, 0], [30, 55, 99, 0]])
    out = emb(ids)
    assert torch.equal(out[0, 0], out[0, 2])  # the same token, the same row
    assert torch.equal(out[0, 0], emb.weight[2]) and torch.equal(out[1, 0], emb.weight[4])
    assert torch.equal(out[1, 1], out[1, 2]) and torch.equal(out[1, 1], emb.weight[UNKNOWN_ROW])
    assert not torch.equal(out[1, 1], out[0, 0])
    assert torch.count_nonzero(out[:, 3]) == 0  # padding stays a zero vector
    out.sum().backward()
    assert torch.count_nonzero(emb.weight.grad[PAD_ROW]) == 0
    with pytest.raises(IndexError):
        emb(torch.tensor([[100]]))  # beyond the tokenizer: an error, as with nn.Embedding


def test_word_embedding_without_word_ids_is_the_full_table() -> None:
    emb = WordEmbedding(100, 8)
    assert emb.weight.shape == (100, 8)
    assert torch.equal(emb(torch.tensor([42])), emb.weight[42:43])


def test_used_word_ids_are_sorted_distinct_without_padding_and_include_abstracts() -> None:
    news = NewsInputs(title=torch.tensor([[0, 0], [101, 7], [101, 9]]), title_mask=torch.ones(3, 2, dtype=torch.bool),
                      category=torch.zeros(3, dtype=torch.long), subcategory=torch.zeros(3, dtype=torch.long),
                      abstract=torch.tensor([[0], [500], [7]]), abstract_mask=torch.ones(3, 1, dtype=torch.bool))
    assert used_word_ids(news).tolist() == [7, 9, 101, 500]


def test_encoded_data_keeps_minilm_ids_and_the_cache_keeps_the_vocabulary(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", users=8)
    spec = parse_variant("original")
    with open_store(db) as store:
        first, path = fetch_encoded(store.conn, "tiny", spec, ("title",), 12, 10, None, tmp_path / "cache")
        again, path2 = fetch_encoded(store.conn, "tiny", spec, ("title",), 12, 10, None, tmp_path / "cache")
    assert path == path2
    tokenizer = feats.load_tokenizer()
    assert first.vocab_size == tokenizer.vocab_size  # PLMNR/DIRE still see MiniLM's id space
    expected = np.unique(first.news.title.numpy())
    assert first.word_ids.tolist() == [int(i) for i in expected if i != 0]
    assert np.array_equal(again.word_ids, first.word_ids)
    # the titles are MiniLM's own ids, untouched by the local vocabulary
    with open_store(db) as store:
        title = store.conn.execute("SELECT title FROM news WHERE nid = ?", [first.news_ids[0]]).fetchone()[0]
    expected_ids = tokenizer([title], padding="max_length", truncation=True, max_length=12)["input_ids"][0]
    assert first.news.title[1].tolist() == expected_ids

    sizes = feature_sizes(first)
    model = build_model("dcn", ModelConfig(features=("title",), title_len=12), sizes)
    assert model.embedder.words.weight.shape[0] == len(first.word_ids) + 2
    # every token of the data has its own row: no real token falls into the unknown row
    rows = model.embedder.words.rows[first.news.title]
    assert bool((rows[first.news.title != 0] >= 2).all())
    state = model.state_dict()
    reloaded = build_model("dcn", ModelConfig(features=("title",), title_len=12), sizes)
    reloaded.load_state_dict(state)
    model.eval(), reloaded.eval()
    some = first.news.select(torch.arange(4))
    assert torch.equal(reloaded.encode_news(some), model.encode_news(some))


def test_a_checkpoint_of_the_old_full_vocabulary_layout_is_refused_clearly(tmp_path: Path) -> None:
    import json

    from recsys.errors import CheckpointError
    from recsys.train import WEIGHTS_FORMAT, RunSettings, check_checkpoint

    settings = RunSettings(model="din", seed=1, epochs=1, batch_size=8, eval_batch_size=8, lr=0.01,
                           weight_decay=0.0, negatives=1, patience=1, history_len=5, model_config=ModelConfig())
    identity = settings.identity()
    assert identity["weights_format"] == WEIGHTS_FORMAT
    old = {k: v for k, v in identity.items() if k != "weights_format"} | {"data": "fp"}
    (tmp_path / "run.json").write_text(json.dumps(old))
    with pytest.raises(CheckpointError, match="other settings"):
        check_checkpoint(tmp_path, settings, "fp")
    (tmp_path / "run.json").write_text(json.dumps(identity | {"data": "fp"}))
    check_checkpoint(tmp_path, settings, "fp")
