"""Table 1 of the enriched data (genre_local/store/enrichment.py, report view enrichment): title
lengths, profile coverage and the Chain cohort, synthetic news counts, per generation source."""

from __future__ import annotations

from pathlib import Path

import pytest

from genre_local.store import open_store
from genre_local.store.enrichment import chain_cohort_users, load_enrichment_stats
from genre_local.store.generations import GenerationSource
from tests.support_train import add_generation, make_store


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = make_store(tmp_path_factory.mktemp("enrich") / "s.duckdb", users=8, news_per_cat=4)
    with open_store(path) as store:
        nids = [r[0] for r in store.conn.execute("SELECT nid FROM news ORDER BY nid LIMIT 2").fetchall()]
        # Source a: two enhanced titles of 6 and 2 words; profiles with 2, 1 and 0 taxonomy topics.
        add_generation(store, "tiny", "summarize", nids[0], {"title": "a  clear complete and neutral title"}, model="a")
        add_generation(store, "tiny", "summarize", nids[1], {"title": "short one"}, model="a")
        add_generation(store, "tiny", "profile", "U0", {"topics": ["finance", "health", "finance"],
                                                        "regions": ["Ohio", "Atlantis"]}, model="a")
        add_generation(store, "tiny", "profile", "U1", {"topics": ["travel", "not-a-topic"], "regions": []}, model="a")
        add_generation(store, "tiny", "profile", "U2", {"topics": ["not-a-topic"], "regions": ["Texas"]}, model="a")
        add_generation(store, "tiny", "profile", "U3", None, valid=False, model="a")
        items = [{"title": "t", "abstract": "x", "category": "sports"}] * 3
        add_generation(store, "tiny", "news", "U0", {"items": items}, model="a")
        add_generation(store, "tiny", "news", "U3", {"items": items[:1]}, model="a")
        # Source b (another prompt set of the same LLM): one chain output only.
        add_generation(store, "tiny", "chain", "U0", {"items": items[:2]}, model="a", prompt_set="paper")
    return path


def test_one_row_per_source_with_the_counts_of_its_own_outputs(db: Path) -> None:
    with open_store(db) as store:
        stats = load_enrichment_stats(store.conn, "tiny")
        titles = dict(store.conn.execute("SELECT nid, title FROM news").fetchall())
        first_two = [r[0] for r in store.conn.execute("SELECT nid FROM news ORDER BY nid LIMIT 2").fetchall()]
    assert [s.label for s in stats] == ["a/compact", "a/paper"]
    a, b = stats
    assert (a.news, a.enhanced_titles, b.enhanced_titles) == (16, 2, 0)
    original = [len(titles[n].split()) for n in first_two]
    assert a.original_words_mean == pytest.approx(sum(original) / 2)
    assert (a.enhanced_words_mean, a.enhanced_words_median) == (pytest.approx(4.0), pytest.approx(4.0))
    assert b.enhanced_words_mean is None
    # U0: finance, health (deduplicated) and Ohio (Atlantis is no state); U1: travel; U2: no topic.
    assert (a.profiled_users, a.valid_profile_users) == (3, 2)
    assert a.mean_topics == pytest.approx(1.5) and a.mean_regions == pytest.approx(0.5)
    assert a.users_with_history == 8
    assert (a.news_users, a.news_items, a.news_per_user) == (2, 4, 2.0)
    assert (a.chain_users, a.chain_per_user) == (0, None)
    assert (b.chain_users, b.chain_items, b.profiled_users, b.mean_topics) == (1, 2, 0, None)


def test_chain_cohort_is_the_users_with_a_valid_topic_of_that_source(db: Path) -> None:
    with open_store(db) as store:
        assert chain_cohort_users(store.conn, "tiny", GenerationSource("a", "compact")) == ["U0", "U1"]
        assert chain_cohort_users(store.conn, "tiny", GenerationSource("a", "paper")) == []
        assert load_enrichment_stats(store.conn, "other") == []


def test_report_view_per_source_in_csv_terminal_and_html(db: Path, tmp_path: Path) -> None:
    import csv

    from genre_local.report.build import ReportInputs, build_report

    with open_store(db) as store:
        stats = load_enrichment_stats(store.conn, "tiny")
    report = build_report(ReportInputs("tiny", [], [], [], "title,category", 2, enrichment=stats), tmp_path)
    (result,) = [v for v in report.views if v.name == "enrichment"]
    assert not result.skipped and result.rows == 2
    with (tmp_path / "enrichment.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["generation_source"] for r in rows] == ["a/compact", "a/paper"]
    assert rows[0]["valid_profile_users"] == "2" and rows[0]["news_per_user"] == "2.0" and rows[1]["chain_per_user"] == "2.0"
    table = result.tables[0]
    assert table.title.startswith("Table 1") and len(table.rows) == 2
    html = report.html.read_text(encoding="utf-8")
    assert 'id="view-enrichment"' in html and "a/paper" in html
    assert "2 (25%) of 3 profiled" in html  # 2 valid profiles of 8 users with a history
