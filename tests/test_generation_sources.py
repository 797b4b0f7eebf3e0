"""Issue 9 §1: outputs of different LLMs never mix; every variant and run names its source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.errors import UserError
from genre_local.store import open_store
from genre_local.store.generations import (
    GenerationSource,
    chain_items,
    enhanced_titles_before,
    profiles_up_to,
    read_enhanced_titles,
    sources_with_tasks,
)
from genre_local.store.variants import content_fingerprint, read_variant, resolve_source
from recsys.variants import parse_variant
from tests.support_train import add_generation, make_store, one_thread

runner = CliRunner()
A = GenerationSource("alpha@111", "compact")
B = GenerationSource("beta@222", "imported")

SMALL = """
[train]
embed_dim = 16
num_heads = 2
history_len = 10
title_len = 12
batch_size = 32
lr = 0.01
epochs = 1
threads = 1
"""


def _two_sources(path: Path) -> Path:
    """Enhanced titles for every news from two LLMs; alpha also wrote profiles, beta did not."""
    db = make_store(path, users=8, news_per_cat=3)
    with open_store(db) as store:
        nids = [r[0] for r in store.conn.execute("SELECT nid FROM news ORDER BY nid").fetchall()]
        for nid in nids:
            add_generation(store, "tiny", "summarize", nid, {"title": f"alpha says {nid}"},
                           model=A.llm, prompt_set=A.prompt_set)
            add_generation(store, "tiny", "summarize", nid, {"title": f"beta says {nid}"},
                           model=B.llm, prompt_set=B.prompt_set)
        for u in range(8):
            add_generation(store, "tiny", "profile", f"U{u}", {"topics": ["health"], "regions": ["Ohio"]},
                           model=A.llm, prompt_set=A.prompt_set)
    return db


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return _two_sources(tmp_path_factory.mktemp("sources") / "s.duckdb")


def test_two_sources_give_two_different_ns_datasets(db: Path) -> None:
    spec = parse_variant("ns")
    with open_store(db, read_only=True) as store:
        assert sources_with_tasks(store.conn, "tiny", ["summarize"]) == [A, B]
        rows_a = read_variant(store.conn, "tiny", spec, A)
        rows_b = read_variant(store.conn, "tiny", spec, B)
        assert all(t.startswith("alpha says") for t in rows_a.news.titles)
        assert all(t.startswith("beta says") for t in rows_b.news.titles)
        assert rows_a.stats["enhanced_titles"] == rows_b.stats["enhanced_titles"] == len(rows_a.news.nids)
        fp_a, fp_b = (content_fingerprint(store.conn, "tiny", spec, s) for s in (A, B))
        assert fp_a != fp_b  # the encoded-data cache key differs per source
        assert read_enhanced_titles(store.conn, "tiny", B)["N1"] == "beta says N1"


def test_several_sources_need_llm_and_the_error_lists_them(db: Path) -> None:
    with open_store(db, read_only=True) as store:
        with pytest.raises(UserError, match=r"2 generation sources \(alpha@111/compact, beta@222/imported\).*--llm"):
            resolve_source(store.conn, "tiny", parse_variant("ns"), None)
        ns = parse_variant("ns")
        assert resolve_source(store.conn, "tiny", ns, "beta@222") == B
        assert resolve_source(store.conn, "tiny", ns, "alpha") == A  # the folder name before '@'
        assert resolve_source(store.conn, "tiny", ns, "beta@222/imported") == B
        with pytest.raises(UserError, match="--llm 'gamma' names no generation source.*alpha@111/compact"):
            resolve_source(store.conn, "tiny", ns, "gamma")
        # ns+up: only alpha wrote both, so it is the default
        assert resolve_source(store.conn, "tiny", parse_variant("ns+up"), None) == A
        with pytest.raises(UserError, match="--llm 'beta' names no generation source"):
            resolve_source(store.conn, "tiny", parse_variant("ns+up"), "beta")
        assert resolve_source(store.conn, "tiny", parse_variant("original"), None) is None
        with pytest.raises(UserError, match="reads no generations; drop --llm"):
            resolve_source(store.conn, "tiny", parse_variant("original"), "alpha")


def test_no_single_source_with_every_task_is_a_user_error(tmp_path: Path) -> None:
    db = make_store(tmp_path / "split.duckdb", users=4, news_per_cat=2)
    with open_store(db) as store:
        add_generation(store, "tiny", "summarize", "N1", {"title": "t"}, model="one")
        add_generation(store, "tiny", "profile", "U0", {"topics": ["health"], "regions": []}, model="two")
        with pytest.raises(UserError, match="outputs of one LLM"):
            resolve_source(store.conn, "tiny", parse_variant("ns+up"), None)


def test_pipeline_readers_keep_to_one_model(tmp_path: Path) -> None:
    db = make_store(tmp_path / "rounds.duckdb", users=4, news_per_cat=2)
    with open_store(db) as store:
        add_generation(store, "tiny", "summarize", "N1", {"title": "from one"}, model="one")
        add_generation(store, "tiny", "profile", "U0", {"topics": ["health"], "regions": []}, model="one")
        add_generation(store, "tiny", "chain", "U0", {"items": [{"title": "c", "abstract": "", "category": "news"}]},
                       model="one")
        assert enhanced_titles_before(store.conn, "tiny", 2, "one") == {"N1": "from one"}
        assert enhanced_titles_before(store.conn, "tiny", 2, "two") == {}
        assert profiles_up_to(store.conn, "tiny", 1, "two") == {}
        assert profiles_up_to(store.conn, "tiny", 1, "one")["U0"] == (["health"], [])
        assert chain_items(store.conn, "tiny", 1, "two") == {} and chain_items(store.conn, "tiny", 1, "one")


def test_train_records_the_source_and_refuses_to_guess(tmp_path: Path) -> None:
    db = _two_sources(tmp_path / "t.duckdb")
    config = tmp_path / "genre.toml"
    config.write_text(SMALL)
    base = ["--db", str(db), "--config", str(config), "train", "--model", "nrms", "--dataset", "tiny", "--variant", "ns"]
    result = runner.invoke(app, base)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "alpha@111/compact, beta@222/imported" in lines[0] and "--llm" in lines[0]
    with one_thread():
        payloads = {}
        for llm in ("alpha", "beta"):
            result = runner.invoke(app, [*base, "--llm", llm, "--json"])
            assert result.exit_code == 0, result.output
            payloads[llm] = json.loads(result.stdout.strip().splitlines()[-1])
    assert payloads["alpha"]["source"] == A.label and payloads["beta"]["source"] == B.label
    with open_store(db, read_only=True) as store:
        rows = store.conn.execute(
            "SELECT s.llm, s.prompt_set, r.data_fingerprint FROM runs r JOIN run_sources s USING (run_id) "
            "ORDER BY s.llm").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(A.llm, A.prompt_set), (B.llm, B.prompt_set)]
    assert rows[0][2] != rows[1][2]
    with open_store(db, read_only=True) as store:
        beta_run = store.conn.execute("SELECT run_id FROM run_sources WHERE llm = ?", [B.llm]).fetchone()[0]
    predict = ["--db", str(db), "--config", str(config), "predict", "--model", "nrms", "--dataset", "tiny",
               "--variant", "ns", "--out", str(tmp_path / "prediction.txt")]
    with one_thread():
        result = runner.invoke(app, [*predict, "--llm", "beta"])
    assert result.exit_code == 0, result.output
    assert f"weights of run {beta_run}" in result.stdout
    result = runner.invoke(app, predict)
    assert result.exit_code == 2 and "pick one with --llm" in result.stderr


# -- the report: one row group per source, each source's cost beside its gain ---------------------


def test_report_shows_one_entry_per_source_with_its_own_cost(tmp_path: Path) -> None:
    import csv

    from tests.support_report import add_dataset, add_generation_run, add_run, all_metrics

    db = tmp_path / "r.duckdb"
    with open_store(db) as store:
        add_dataset(store, "d")
        for seed, auc in ((1, 0.60), (2, 0.62)):
            add_run(store, "d", "nrms", "original", seed, all_metrics(auc))
            add_run(store, "d", "nrms", "ns", seed, all_metrics(auc + 0.05), source=(A.llm, A.prompt_set))
            add_run(store, "d", "nrms", "ns", seed, all_metrics(auc + 0.01), source=(B.llm, B.prompt_set))
        add_generation_run(store, "d", "summarize", model=A.llm, prompt_set=A.prompt_set, engine_seconds=3600.0)
    out = tmp_path / "rep"
    result = runner.invoke(app, ["--db", str(db), "report", "--dataset", "d", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with (out / "variants.csv").open(newline="") as handle:
        auc = {r["generation_source"]: r for r in csv.DictReader(handle) if r["metric"] == "auc"}
    assert set(auc) == {A.label, B.label}
    assert float(auc[A.label]["improvement"]) == pytest.approx(0.05)
    assert float(auc[B.label]["improvement"]) == pytest.approx(0.01)
    assert auc[A.label]["original_seeds"] == auc[B.label]["original_seeds"] == "1 2"
    with (out / "cost.csv").open(newline="") as handle:
        cost = {r["generation_source"]: r for r in csv.DictReader(handle) if r["scheme"] == "NS"}
    assert set(cost) == {A.label, B.label}
    # alpha: one engine-hour bought +0.05 AUC; beta (imported) has a gain but no cost, so no CCR
    assert float(cost[A.label]["matching_ccr"]) == pytest.approx(0.05)
    assert float(cost[B.label]["matching_auc_improvement"]) == pytest.approx(0.01)
    assert cost[B.label]["matching_ccr"] == "" and cost[B.label]["cost_units"] == ""
    assert f"ns · {A.label}" in result.stdout and f"ns · {B.label}" in result.stdout


def test_runs_without_a_recorded_source_still_count_for_the_only_generating_llm(tmp_path: Path) -> None:
    from genre_local.report.runs import index_runs
    from genre_local.report.views.cost import cost_table
    from genre_local.store.results import load_generation_runs, load_metric_rows
    from tests.support_report import add_dataset, add_generation_run, add_run, all_metrics

    db = tmp_path / "legacy.duckdb"
    with open_store(db) as store:
        add_dataset(store, "d")
        add_run(store, "d", "din", "original", 1, all_metrics(0.6))
        add_run(store, "d", "din", "ns", 1, all_metrics(0.7))  # stored before migration 006: no source
        add_generation_run(store, "d", "summarize", engine_seconds=7200.0)
        rows = cost_table(load_generation_runs(store, "d"), index_runs(load_metric_rows(store, "d")),
                          "title,category", 2)
    ns = [r for r in rows if r.scheme == "NS"]
    assert len(ns) == 1 and ns[0].source == "llama/compact"
    assert ns[0].ranking_improvement == pytest.approx(0.1) and ns[0].ranking_ccr == pytest.approx(0.05)


def test_reading_a_variant_without_a_source_never_mixes_two(db: Path) -> None:
    with open_store(db, read_only=True) as store:
        with pytest.raises(UserError, match="pick one with --llm"):
            read_variant(store.conn, "tiny", parse_variant("ns"), None)
        only_alpha = read_variant(store.conn, "tiny", parse_variant("ns+up"), None)  # alpha alone has both
        assert len(only_alpha.news.nids) == len(set(only_alpha.news.nids))
        assert all(t.startswith("alpha says") for t in only_alpha.news.titles)
