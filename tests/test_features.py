"""News features: WordPiece titles, vocabularies, image vectors, and the tensor cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from recsys.errors import RecsysError
from genre_local.store import open_store
from genre_local.store.variants import fetch_encoded
from recsys import features as feats
from recsys.features import NewsRows, load_image_vectors, parse_features, tensorize_news
from recsys.variants import parse_variant
from tests.support_train import make_store


@pytest.fixture(scope="module")
def tokenizer():
    return feats.load_tokenizer()


def _rows() -> NewsRows:
    return NewsRows(
        nids=["N1", "N2", "N3"],
        titles=["Storm heads for Florida", "", "a " * 100],
        abstracts=["Residents prepare.", "x", ""],
        categories=["weather", "sports", "weather"],
        subcategories=["w1", "s1", "w2"],
    )


def test_parse_features_canonical_and_errors() -> None:
    assert parse_features("title, Category,title") == ("title", "category")
    with pytest.raises(RecsysError, match="unknown feature 'pictures'"):
        parse_features("title,pictures")
    with pytest.raises(RecsysError, match="must include 'title'"):
        parse_features("category,abstract")


def test_titles_are_cls_title_sep_padded_and_row0_is_padding(tokenizer) -> None:
    news, categories, subcategories = tensorize_news(_rows(), ("title", "category"), 8, 10, None, tokenizer)
    assert news.title.shape == (4, 8) and news.title.dtype == torch.long
    assert news.title[0].eq(0).all() and not news.title_mask[0].any()
    expected = tokenizer("Storm heads for Florida")["input_ids"]
    assert expected[0] == tokenizer.cls_token_id and expected[-1] == tokenizer.sep_token_id
    assert news.title[1, : len(expected)].tolist() == expected
    assert news.title_mask[1].sum() == len(expected) and news.title[1, len(expected):].eq(0).all()
    assert news.title[2, :2].tolist() == [tokenizer.cls_token_id, tokenizer.sep_token_id]  # empty title
    assert news.title[3, -1] == tokenizer.sep_token_id and news.title_mask[3].all()  # truncated, SEP kept
    # vocabularies: 0 = padding, sorted strings from 1
    assert categories.tokens == ("sports", "weather") and len(categories) == 3
    assert news.category.tolist() == [0, 2, 1, 2]
    assert news.subcategory.tolist() == [0, 2, 1, 3]  # s1 < w1 < w2
    assert news.abstract is None and news.image is None


def test_abstract_and_image_features(tmp_path: Path, tokenizer) -> None:
    matrix = np.arange(2 * 512, dtype=np.float32).reshape(2, 512)
    np.save(tmp_path / "img.npy", matrix)
    (tmp_path / "img.txt").write_text("N3\nN1\n")
    news, _, _ = tensorize_news(_rows(), ("title", "abstract", "image"), 8, 6, tmp_path / "img.npy", tokenizer)
    assert news.abstract.shape == (4, 6) and news.abstract_mask[1].any() and not news.abstract_mask[0].any()
    assert news.image.shape == (4, 512)
    assert news.image_present.tolist() == [False, True, False, True]
    assert torch.equal(news.image[1], torch.from_numpy(matrix[1])) and torch.equal(news.image[3], torch.from_numpy(matrix[0]))
    assert news.image[2].eq(0).all()
    with pytest.raises(RecsysError, match="no image file"):
        tensorize_news(_rows(), ("title", "image"), 8, 6, None, tokenizer)


def test_image_parquet_and_bad_files(tmp_path: Path) -> None:
    vec = [float(i) for i in range(512)]
    wide = pa.table({"nid": ["N2"], **{f"f{i}": [v] for i, v in enumerate(vec)}})
    pq.write_table(wide, tmp_path / "wide.parquet")
    image, present = load_image_vectors(tmp_path / "wide.parquet", ["", "N1", "N2"])
    assert present.tolist() == [False, False, True] and image[2].tolist() == vec
    pq.write_table(pa.table({"nid": ["N1"], "vector": [vec]}), tmp_path / "list.parquet")
    _, present = load_image_vectors(tmp_path / "list.parquet", ["N1"])
    assert present.tolist() == [True]

    np.save(tmp_path / "short.npy", np.zeros((1, 10), dtype=np.float32))
    (tmp_path / "short.txt").write_text("N1\n")
    with pytest.raises(RecsysError, match="512-d"):
        load_image_vectors(tmp_path / "short.npy", ["N1"])
    np.save(tmp_path / "noids.npy", np.zeros((1, 512), dtype=np.float32))
    with pytest.raises(RecsysError, match="id list"):
        load_image_vectors(tmp_path / "noids.npy", ["N1"])
    (tmp_path / "noids.txt").write_text("N1\nN2\n")
    with pytest.raises(RecsysError, match="2 ids for 1 rows"):
        load_image_vectors(tmp_path / "noids.npy", ["N1"])
    with pytest.raises(RecsysError, match="does not exist"):
        load_image_vectors(tmp_path / "missing.npy", ["N1"])
    (tmp_path / "v.csv").write_text("x")
    with pytest.raises(RecsysError, match=".npy"):
        load_image_vectors(tmp_path / "v.csv", ["N1"])


def test_cache_is_reused_until_the_store_content_changes(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", users=8)
    cache = tmp_path / "cache"
    spec = parse_variant("original")
    with open_store(db) as store:
        first, path1 = fetch_encoded(store.conn, "tiny", spec, ("title",), 12, 10, None, cache)
        stamp = path1.stat().st_mtime_ns
        again, path2 = fetch_encoded(store.conn, "tiny", spec, ("title",), 12, 10, None, cache)
        assert path1 == path2 and path2.stat().st_mtime_ns == stamp  # loaded, not rebuilt
        assert torch.equal(first.news.title, again.news.title)
        assert np.array_equal(first.split("train").history, again.split("train").history)
        _, other_len = fetch_encoded(store.conn, "tiny", spec, ("title",), 16, 10, None, cache)
        assert other_len != path1
        store.conn.execute("UPDATE news SET title = 'changed words' WHERE nid = 'N1'")
        changed, path3 = fetch_encoded(store.conn, "tiny", spec, ("title",), 12, 10, None, cache)
    assert path3 != path1
    row = changed.news_ids.index("N1") + 1
    assert not torch.equal(changed.news.title[row], first.news.title[row])


def _with_ids(path: Path, ids: str = "N1\n") -> Path:
    path.with_suffix(".txt").write_text(ids)
    return path


@pytest.mark.parametrize("name,write,phrase", [
    ("strings.npy", lambda p: np.save(p, np.array([["a"] * 512])), "holds <U1 values, not numbers"),
    ("objects.npy", lambda p: np.save(p, np.array([[object()] * 512], dtype=object), allow_pickle=True),
     "not a numeric .npy matrix"),
    ("archive.npy", lambda p: (np.savez(p.with_suffix(".npz"), a=np.zeros((1, 512))), p.with_suffix(".npz").rename(p)),
     "is a .npz archive"),
    ("text.npy", lambda p: p.write_text("0.1 0.2\n"), "not a numeric .npy matrix"),
    ("scalar.npy", lambda p: np.save(p, np.float32(1.0)), "0 rows"),
])
def test_bad_npy_contents_are_one_line_errors(tmp_path: Path, name: str, write, phrase: str) -> None:
    path = _with_ids(tmp_path / name)
    write(path)
    with pytest.raises(RecsysError, match=phrase.replace(".", r"\.").replace("(", r"\(")) as err:
        load_image_vectors(path, ["N1"])
    assert "\n" not in str(err.value)


def test_non_utf8_id_list_is_a_one_line_error(tmp_path: Path) -> None:
    np.save(tmp_path / "img.npy", np.zeros((1, 512), dtype=np.float32))
    (tmp_path / "img.txt").write_bytes(b"N\xff1\n")
    with pytest.raises(RecsysError, match="not UTF-8"):
        load_image_vectors(tmp_path / "img.npy", ["N1"])


@pytest.mark.parametrize("table,phrase", [
    (pa.table({"nid": ["N1", "N2"]}), "only the 'nid' column"),
    (pa.table({"nid": ["N1", "N2"], "vector": [[0.0] * 512, [0.0] * 511]}), "different lengths"),
    (pa.table({"nid": ["N1"], "vector": [["x"] * 512]}), "not numbers"),
    (pa.table({"nid": ["N1"], **{f"f{i}": ["x"] for i in range(512)}}), "not numbers"),
    (pa.table({"nid": ["N1", "N2"], "vector": pa.array([[0.0] * 512, None], pa.list_(pa.float64()))}), "null"),
])
def test_bad_parquet_contents_are_one_line_errors(tmp_path: Path, table: pa.Table, phrase: str) -> None:
    pq.write_table(table, tmp_path / "img.parquet")
    with pytest.raises(RecsysError, match=phrase) as err:
        load_image_vectors(tmp_path / "img.parquet", ["N1"])
    assert "\n" not in str(err.value)
