"""GENRE variants built from a store with hand-written generations."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from genre_local.errors import UserError
from genre_local.store import open_store
from genre_local.store.variants import content_fingerprint, read_variant
from recsys.data import encode_variant
from recsys.errors import ConfigError
from recsys.variants import VariantSpec, parse_variant
from tests.support_train import add_all_generations, add_generation, make_store

USERS = 12


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> Path:
    db = make_store(tmp_path_factory.mktemp("variants") / "s.duckdb", users=USERS, news_per_cat=8)
    add_all_generations(db, users=USERS)
    return db


def _read(db: Path, variant: str, k: int = 2):
    with open_store(db) as store:
        return read_variant(store.conn, "tiny", parse_variant(variant, k))


def _histories(rows) -> dict[tuple[str, int], list[str]]:
    t = rows.impressions
    return {
        (s, i): h for s, i, h in zip(t["split"].to_pylist(), t["impression_id"].to_pylist(), t["history"].to_pylist(), strict=True)
    }


def test_parse_variant() -> None:
    assert parse_variant("ns+up+ng", 1) == VariantSpec(ns=True, up=True, ng_source="news", ng_k=1)
    assert parse_variant("chain", 3).name == "chain" and parse_variant("chain", 3).ng_source == "chain"
    assert parse_variant("up+ns").name == "ns+up"  # canonical order
    assert parse_variant("original", 2).ng_k == 0
    for bad, message in (("foo", "unknown part 'foo'"), ("original+ns", "cannot be combined"),
                         ("ng+chain", "either ng"), ("", "empty")):
        with pytest.raises(ConfigError, match=message):
            parse_variant(bad)
    with pytest.raises(ConfigError, match="ng_k"):
        parse_variant("ng", -1)


def test_original_is_the_imported_data(store_path: Path) -> None:
    rows = _read(store_path, "original")
    with open_store(store_path) as store:
        titles = dict(store.conn.execute("SELECT nid, title FROM news").fetchall())
        history = dict(((s, i), h) for s, i, h in store.conn.execute("SELECT split, impression_id, history FROM impressions").fetchall())
    assert dict(zip(rows.news.nids, rows.news.titles, strict=True)) == titles
    assert _histories(rows) == history


def test_ns_replaces_titles_that_have_an_enhanced_version(store_path: Path) -> None:
    with open_store(store_path) as store:
        # an invalid, newer output and an older round never win over the latest valid one
        add_generation(store, "tiny", "summarize", "N2", None, valid=False, round_=5, created=datetime(2030, 1, 1))
        add_generation(store, "tiny", "summarize", "N1", {"title": "stale round"}, round_=0)
    rows = _read(store_path, "ns")
    titles = dict(zip(rows.news.nids, rows.news.titles, strict=True))
    original = dict(zip(*(lambda r: (r.news.nids, r.news.titles))(_read(store_path, "original")), strict=True))
    with open_store(store_path) as store:
        enhanced = dict(store.conn.execute("SELECT nid, title FROM enhanced_titles WHERE dataset = 'tiny'").fetchall())
    assert titles["N1"] == "enhanced sports story N1"
    for nid, title in titles.items():
        assert title == enhanced.get(nid, original[nid])
    assert rows.stats["enhanced_titles"] == len(enhanced) and rows.stats["titles_kept"] == len(titles) - len(enhanced)
    assert rows.stats["titles_kept"] > 0


def test_up_reads_profiles_and_encodes_them(store_path: Path) -> None:
    rows = _read(store_path, "up")
    assert len(rows.profiles) == USERS and rows.profiles["U1"] == (["finance", "history"], ["Ohio"])
    data = encode_variant(rows, ("title",), 12, 10, None)
    table = data.profiles
    assert table is not None and table.has_profile.tolist() == [False] + [True] * USERS
    train = data.split("train")
    row = int(np.flatnonzero(train.profile_index > 0)[0])
    p = train.profile_index[row]
    assert table.topics_mask[p].sum() == 2 and table.regions_mask[p].sum() == 1
    assert not table.topics_mask[0].any()


@pytest.mark.parametrize("variant,source", [("ng", "news"), ("chain", "chain")])
def test_ng_appends_first_k_synthetic_news_to_cold_histories(store_path: Path, variant: str, source: str) -> None:
    original = _histories(_read(store_path, "original"))
    rows = _read(store_path, variant, k=2)
    with open_store(store_path) as store:
        synthetic = store.conn.execute(
            "SELECT user_id, list(nid ORDER BY position), list(title ORDER BY position) FROM synthetic_news "
            "WHERE dataset = 'tiny' AND source_task = ? GROUP BY user_id", [source]
        ).fetchall()
    first_two = {u: nids[:2] for u, nids, _ in synthetic}
    t = rows.impressions
    cold_seen = 0
    for s, i, u, h, n in zip(t["split"].to_pylist(), t["impression_id"].to_pylist(), t["user_id"].to_pylist(),
                             t["history"].to_pylist(), t["original_history_len"].to_pylist(), strict=True):
        before = original[(s, i)]
        assert n == len(before)  # new/warm grouping uses the imported history
        if 1 <= len(before) <= 5 and u in first_two:
            assert h == before + first_two[u]  # appended as the most recent reads
            cold_seen += 1
        else:
            assert h == before
    assert cold_seen > 0
    titles = dict(zip(rows.news.nids, rows.news.titles, strict=True))
    for u, nids, texts in synthetic:
        assert titles[nids[0]] == texts[0] and nids[2] not in titles  # only the K used join the news table
        assert texts[0].startswith(source)
    assert rows.stats["synthetic_news"] == 2 * len(first_two)


def test_ng_k_zero_is_the_original_and_needs_no_generations(tmp_path: Path) -> None:
    db = make_store(tmp_path / "bare.duckdb", users=6, news_per_cat=3)
    assert _histories(_read(db, "ng", k=0)) == _histories(_read(db, "original"))


@pytest.mark.parametrize("variant,task", [("ns", "summarize"), ("up", "profile"), ("ng", "news"),
                                          ("chain", "chain"), ("ns+up+ng", "summarize")])
def test_missing_generations_name_the_command(tmp_path_factory, variant: str, task: str) -> None:
    db = make_store(tmp_path_factory.mktemp("bare") / "s.duckdb", users=6, news_per_cat=3)
    with open_store(db) as store:  # an invalid output is not a generation
        add_generation(store, "tiny", task, "N1" if task == "summarize" else "U0", None, valid=False)
    with pytest.raises(UserError) as err:
        _read(db, variant)
    message = str(err.value)
    assert f"genre-local generate --dataset tiny --task {task}" in message and "\n" not in message


def test_building_variants_never_mutates_imported_rows(store_path: Path) -> None:
    def snapshot():
        with open_store(store_path) as store:
            return [store.conn.execute(f"SELECT count(*), bit_xor(hash(x)) FROM {t} x").fetchall()
                    for t in ("news", "impressions", "generations")]

    before = snapshot()
    for variant in ("ns+up+ng", "chain"):
        _read(store_path, variant)
    assert snapshot() == before


def test_fingerprint_follows_the_rows_the_variant_reads(store_path: Path) -> None:
    with open_store(store_path) as store:
        ng = parse_variant("ng", 2)
        before_ng = content_fingerprint(store.conn, "tiny", ng)
        before_orig = content_fingerprint(store.conn, "tiny", parse_variant("original"))
        add_generation(store, "tiny", "news", "U0", {"items": [{"title": "t", "abstract": "a", "category": "news"}]},
                       created=datetime(2031, 1, 1))
        assert content_fingerprint(store.conn, "tiny", ng) != before_ng
        assert content_fingerprint(store.conn, "tiny", parse_variant("original")) == before_orig
        assert content_fingerprint(store.conn, "tiny", parse_variant("ng", 1)) != content_fingerprint(store.conn, "tiny", ng)
