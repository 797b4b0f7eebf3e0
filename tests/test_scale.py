"""MIND-large-sized data (issue 10 part 5): the encoded cache is memory-mapped, not copied into
the heap, and reads back exactly what was written."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from genre_local.store import open_store
from genre_local.store.variants import fetch_encoded
from recsys.data import SplitArrays, load_encoded, save_encoded
from recsys.inputs import TENSOR_FIELDS, TEXT_FIELDS
from recsys.variants import parse_variant
from tests.support_train import make_store


def _encoded(tmp_path: Path):
    db = make_store(tmp_path / "s.duckdb", users=24, news_per_cat=6)
    with open_store(db) as store:
        return fetch_encoded(store.conn, "tiny", parse_variant("original"), ("title", "category"), 12, 8, None,
                             tmp_path / "cache")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="Linux: reads the process's memory map")
def test_the_memory_mapped_cache_reads_back_what_was_written(tmp_path: Path) -> None:
    built, path = _encoded(tmp_path)  # a cache miss: built in memory, then saved
    loaded = load_encoded(path)
    # mapped, not read: the file is in this process's memory map while its arrays live
    assert str(path.resolve()) in Path("/proc/self/maps").read_text()
    assert loaded.news_ids == built.news_ids and loaded.fingerprint == built.fingerprint
    for name, split in built.splits.items():
        for f in fields(SplitArrays):
            assert np.array_equal(getattr(loaded.splits[name], f.name), getattr(split, f.name)), (name, f.name)
    for name in TENSOR_FIELDS:
        want, got = getattr(built.news, name), getattr(loaded.news, name)
        assert (want is None and got is None) or torch.equal(want, got), name
    for name in TEXT_FIELDS:  # the raw strings DIRE reads
        assert np.array_equal(getattr(built.news.texts, name), getattr(loaded.news.texts, name)), name


def test_writing_to_a_loaded_array_never_changes_the_cache_file(tmp_path: Path) -> None:
    _, path = _encoded(tmp_path)
    before = path.read_bytes()
    loaded = load_encoded(path)
    loaded.splits["train"].labels[:] = 7  # copy-on-write: private to this process
    loaded.news.title.zero_()
    assert path.read_bytes() == before
    again = load_encoded(path)
    assert not (again.splits["train"].labels == 7).any() and again.news.title.any()

    resaved = tmp_path / "resaved.pt"
    save_encoded(again, resaved)  # a mapped dataset saves like one built in memory
    assert np.array_equal(load_encoded(resaved).splits["train"].candidates, again.splits["train"].candidates)


def test_train_users_are_numbered_in_python_sort_order_of_their_ids(tmp_path: Path) -> None:
    """The train-user vocabulary is built in Arrow (no Python set of a million ids): the same
    numbering as sorted(set(ids)), non-ASCII ids included; users unseen in train get 0."""
    import dataclasses
    import zlib

    import pyarrow as pa

    from genre_local.store.variants import read_variant
    from recsys.data import encode_variant

    db = make_store(tmp_path / "s.duckdb", users=24, news_per_cat=6)
    with open_store(db) as store:
        rows = read_variant(store.conn, "tiny", parse_variant("original"))
    names = ["Zoë", "zed", "Émile", "émile", "日本", "U1", "u1", "Ärger", "a", "B"]
    ids = rows.impressions["user_id"].to_pylist()
    renamed = [names[zlib.crc32(u.encode()) % len(names)] + u[-1] for u in ids]
    table = rows.impressions.set_column(rows.impressions.schema.get_field_index("user_id"), "user_id",
                                        pa.array(renamed, pa.string()))
    data = encode_variant(dataclasses.replace(rows, impressions=table), ("title", "category"), 12, 8, None)
    splits = table["split"].to_pylist()
    train_users = sorted({u for u, s in zip(renamed, splits) if s == "train"})
    assert data.num_users == len(train_users) + 1
    number = {u: i + 1 for i, u in enumerate(train_users)}
    for name, split in data.splits.items():
        users = [u for u, s in zip(renamed, splits) if s == name]
        assert split.user_index.tolist() == [number.get(u, 0) for u in users], name
        assert not split.profile_index.any()  # original: no profiles
