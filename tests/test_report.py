"""`genre-local report`: every view from hand-inserted rows with hand-computed numbers."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.report.build import ReportInputs, build_report
from genre_local.report.runs import ConfigKey, Summary, index_runs, main_features, main_key, seed_p_value
from genre_local.report.views.chain import chain_table
from genre_local.report.views.cost import cost_table
from genre_local.report.views.feature_ablation import feature_ablation
from genre_local.report.views.ng_k import ng_k_curve
from genre_local.report.views.user_groups import user_group_table
from genre_local.report.views.variants import variant_tables
from genre_local.store import open_store
from genre_local.store.results import (
    GenerationRunRow,
    MetricRow,
    load_epoch_rows,
    load_fidelity,
    load_generation_runs,
    load_metric_rows,
)
from genre_local.store.enrichment import load_enrichment_stats
from tests.support_train import add_generation
from tests.support_report import add_dataset, add_fidelity, add_generation_run, add_run, all_metrics

runner = CliRunner()
FEATURES = "title,category"


def approx(value: float) -> object:
    return pytest.approx(value, abs=1e-9)


# ------------------------------------------------------------------------------------------
# Seeds: mean, sample std, paired t-test
# ------------------------------------------------------------------------------------------
def test_summary_is_mean_and_sample_std_over_seeds() -> None:
    s = Summary({1: 0.60, 2: 0.62, 3: 0.64})
    assert s.n == 3
    assert s.mean == approx(0.62)
    assert s.std == approx(0.02)  # sqrt((0.02^2 + 0 + 0.02^2) / (3 - 1))
    assert Summary({7: 0.5}).std is None  # undefined with one seed, not 0


def test_paired_p_value_matches_hand_computed_t_test() -> None:
    base = Summary({1: 0.60, 2: 0.62, 3: 0.64})
    other = Summary({1: 0.61, 2: 0.64, 3: 0.66, 4: 0.99})  # seed 4 has no pair: ignored
    # diffs .01 .02 .02: mean 1/60, sd 0.0057735, t = 5 with 2 df; p = 1 - t / sqrt(2 + t^2)
    assert seed_p_value(base, other) == pytest.approx(1 - 5 / math.sqrt(27), abs=1e-6)
    assert seed_p_value(Summary({1: 0.6}), Summary({1: 0.7})) is None  # one pair
    # Constant differences: the same convention as `genre-local train` (recsys/experiment.py).
    assert seed_p_value(base, Summary({1: 0.61, 2: 0.63, 3: 0.65})) == 0.0
    assert seed_p_value(base, Summary(dict(base.values))) == 1.0


# ------------------------------------------------------------------------------------------
# Store fixtures
# ------------------------------------------------------------------------------------------
@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "r.duckdb"
    with open_store(path) as store:
        add_dataset(store, "d")
        add_dataset(store, "other")
    return path


def load_index(db: Path, dataset: str = "d"):
    with open_store(db) as store:
        return index_runs(load_metric_rows(store, dataset))


def test_variant_table_mean_std_gain_and_p_from_the_store(db: Path) -> None:
    with open_store(db) as store:
        for seed, (orig, ns) in enumerate([(0.60, 0.61), (0.62, 0.64), (0.64, 0.66)], start=1):
            add_run(store, "d", "nrms", "original", seed, all_metrics(orig, mrr=0.30))
            add_run(store, "d", "nrms", "ns", seed, all_metrics(ns, mrr=0.33))
        add_run(store, "d", "din", "ns", 1, all_metrics(0.9))  # no original: not compared
        add_run(store, "other", "nrms", "original", 1, all_metrics(0.1))  # another dataset
    index = load_index(db)
    tables = variant_tables(index, FEATURES, default_k=2)
    assert [t.variant for t in tables] == ["ns"]
    by_metric = {c.metric: c for c in tables[0].comparisons}
    assert set(by_metric) == {"auc", "mrr", "ndcg@5", "ndcg@10"}
    assert {c.model for c in tables[0].comparisons} == {"nrms"}
    auc = by_metric["auc"]
    assert (auc.base.mean, auc.base.std) == (approx(0.62), approx(0.02))
    assert auc.other.mean == approx(1.91 / 3)
    assert auc.improvement == approx(1.91 / 3 - 0.62)
    assert auc.improvement_pct == approx(100 * (1.91 / 3 - 0.62) / 0.62)
    assert auc.p_value == pytest.approx(1 - 5 / math.sqrt(27), abs=1e-6)
    assert by_metric["mrr"].improvement == approx(0.03)
    assert by_metric["mrr"].p_value == 0.0  # identical gain on every seed


def test_trains_table_over_stored_and_new_seeds_equals_the_report(db: Path, tmp_path: Path) -> None:
    """Regression: `train --seeds 3` with seeds 1 and 2 stored (kept, not trained again) printed
    mean, std and p over seed 3 alone. Its table (genre_local.training.seed_table) covers every
    seed asked for, and its numbers are the report's for those seeds."""
    from recsys.config import TrainConfig
    from recsys.variants import parse_variant

    from genre_local.training import TrainRequest, seed_table

    with open_store(db) as store:
        ns = {}
        for seed, (orig, value) in enumerate([(0.60, 0.61), (0.62, 0.64), (0.64, 0.66)], start=1):
            add_run(store, "d", "nrms", "original", seed, all_metrics(orig, mrr=0.30, groups=("all", "new")))
            ns[seed] = add_run(store, "d", "nrms", "ns", seed, all_metrics(value, mrr=0.33, groups=("all", "new")))
        request = TrainRequest(db_path=db, model="nrms", dataset="d", spec=parse_variant("ns", 2),
                               config=TrainConfig(seeds=3), cache_dir=tmp_path, checkpoint_base=tmp_path)
        table = seed_table(store, request, [ns[3]], {1: ns[1], 2: ns[2]})
    assert [(r.seed, r.run_id, r.trained) for r in table.seeds] == [(1, ns[1], False), (2, ns[2], False),
                                                                    (3, ns[3], True)]
    assert (table.eval_split, table.stop_split, table.paired_seeds) == ("dev", "dev", 3)
    auc = {c.metric: c for c in variant_tables(load_index(db), FEATURES, default_k=2)[0].comparisons}["auc"]
    summary = table.summary()
    assert summary["all"]["auc"] == (approx(auc.other.mean), approx(auc.other.std))
    assert table.p_value == approx(auc.p_value) and table.p_value == pytest.approx(1 - 5 / math.sqrt(27), abs=1e-6)
    assert set(summary) == {"all", "new"} and summary["new"]["mrr"] == (approx(0.33), approx(0.0))
    assert all(r.superseded_by is None for r in table.seeds)
    # A newer run of seed 1 with other settings: the report counts it, and the table says so.
    with open_store(db) as store:
        other = add_run(store, "d", "nrms", "ns", 1, all_metrics(0.7))
        flagged = seed_table(store, request, [ns[3]], {1: ns[1], 2: ns[2]})
    assert [r.superseded_by for r in flagged.seeds] == [other, None, None]


def test_trains_t_test_pairs_only_original_runs_trained_with_the_same_settings(db: Path, tmp_path: Path) -> None:
    """Regression: train's paired t-test took the newest `original` run of each seed whatever its
    settings: a newer original trained with another lr was the baseline of ns runs. It pairs the
    original run of the variant's settings (interest fusion is the variant's own: not compared),
    and says so when no original run of them is stored."""
    from recsys.config import TrainConfig
    from recsys.variants import parse_variant

    from genre_local.training import TrainRequest, seed_table

    same, other_lr = {"lr": 0.001, "epochs": 3}, {"lr": 0.0001, "epochs": 3}
    with open_store(db) as store:
        ns = {}
        for seed, (orig, newer, value) in enumerate([(0.60, 0.90, 0.61), (0.62, 0.80, 0.64), (0.64, 0.85, 0.66)], start=1):
            add_run(store, "d", "nrms", "original", seed, all_metrics(orig), config=same | {"interest_fusion": "gated"})
            add_run(store, "d", "nrms", "original", seed, all_metrics(newer), config=other_lr)  # newer, other lr
            ns[seed] = add_run(store, "d", "nrms", "ns", seed, all_metrics(value),
                               config=same | {"interest_fusion": "concat"})
        longer = {seed: add_run(store, "d", "nrms", "ns", seed, all_metrics(0.7), config=same | {"epochs": 5})
                  for seed in (1, 2, 3)}
        request = TrainRequest(db_path=db, model="nrms", dataset="d", spec=parse_variant("ns", 2),
                               config=TrainConfig(seeds=3), cache_dir=tmp_path, checkpoint_base=tmp_path)
        table = seed_table(store, request, [ns[3]], {1: ns[1], 2: ns[2]})
        unpaired = seed_table(store, request, list(longer.values()), {})
    assert table.paired_seeds == 3 and table.unpaired_note is None
    assert table.p_value == pytest.approx(1 - 5 / math.sqrt(27), abs=1e-6)  # against 0.60, 0.62, 0.64
    assert (unpaired.paired_seeds, unpaired.p_value) == (0, None)
    assert unpaired.unpaired_note is not None
    assert "seeds 1-3" in unpaired.unpaired_note and "differ in epochs, lr" in unpaired.unpaired_note


def test_newest_run_of_a_seed_wins_and_only_the_eval_split_counts(db: Path) -> None:
    with open_store(db) as store:
        add_run(store, "d", "din", "original", 1, all_metrics(0.50), other_split=all_metrics(0.99))
        add_run(store, "d", "din", "original", 1, all_metrics(0.70))  # retrained later, same seed
        add_run(store, "d", "din", "up", 1, all_metrics(0.75), eval_split="test")
    index = load_index(db)
    assert index.summary(ConfigKey("din", "original", 0, FEATURES), "auc").values == {1: approx(0.70)}
    assert index.summary(ConfigKey("din", "up", 0, FEATURES), "auc").values == {1: approx(0.75)}
    assert index.splits[ConfigKey("din", "up", 0, FEATURES)] == {"test"}


def test_a_seed_trained_twice_counts_once_and_the_report_says_so(db: Path, tmp_path: Path) -> None:
    """n in "mean ± sd (n)" counts seeds, not runs: a seed trained again (train --retrain, or
    the same command before train skipped stored runs) counts its newest run, and the report
    names how many runs it left out."""
    with open_store(db) as store:
        for seed, auc in ((1, 0.60), (2, 0.64)):
            add_run(store, "d", "nrms", "original", seed, all_metrics(auc))
        older = add_run(store, "d", "nrms", "ns", 1, all_metrics(0.61))
        add_run(store, "d", "nrms", "ns", 2, all_metrics(0.65))
        add_run(store, "d", "nrms", "ns", 1, all_metrics(0.70))  # seed 1 again, later
    index = load_index(db)
    key = ConfigKey("nrms", "ns", 0, FEATURES)
    assert index.summary(key, "auc").values == {1: approx(0.70), 2: approx(0.65)}
    assert index.superseded == {key: {1: (older,)}} and index.superseded_runs() == 1
    result = runner.invoke(app, ["--db", str(db), "report", "--dataset", "d", "--out", str(tmp_path / "rep"),
                                 "--no-plots", "--no-html", "--json"])
    assert result.exit_code == 0, result.output
    assert "1 older run(s) left out" in result.stdout and "counts its newest run" in result.stdout
    assert json.loads(result.stdout.strip().splitlines()[-1])["datasets"]["d"]["superseded_runs"] == 1
    with (tmp_path / "rep" / "variants.csv").open(newline="") as handle:
        auc = next(r for r in csv.DictReader(handle) if (r["variant"], r["metric"]) == ("ns", "auc"))
    assert (auc["variant_seeds"], float(auc["variant_mean"])) == ("1 2", approx(0.675))


def test_a_retrained_seed_replaces_the_whole_older_run(db: Path) -> None:
    with open_store(db) as store:
        add_run(store, "d", "nrms", "original", 1, all_metrics(0.5, groups=("all", "new")))
        add_run(store, "d", "nrms", "original", 1, all_metrics(0.6) | {("new", "auc"): None})
    index = load_index(db)
    key = ConfigKey("nrms", "original", 0, FEATURES)
    assert index.summary(key, "auc").mean == approx(0.6)
    assert index.summary(key, "auc", group="new") is None  # not the older run's 0.5


def test_rows_spelled_differently_are_one_configuration() -> None:
    rows = [
        MetricRow("nrms", "up+ns", 1, 2, "category, title", "dev", "all", "auc", 0.6),
        MetricRow("nrms", "ns+up", 2, 0, "title,category", "dev", "all", "auc", 0.8),
    ]
    index = index_runs(rows)
    assert list(index.runs) == [ConfigKey("nrms", "ns+up", 0, FEATURES)]  # ng_k is moot without ng
    assert index.summary(ConfigKey("nrms", "ns+up", 0, FEATURES), "auc").mean == approx(0.7)


def test_null_metric_values_are_left_out(db: Path) -> None:
    with open_store(db) as store:
        add_run(store, "d", "nrms", "original", 1, {("all", "auc"): 0.6, ("new", "auc"): None})
        rows = load_metric_rows(store, "d")
    assert [(r.group, r.metric) for r in rows] == [("all", "auc")]


def test_main_tables_use_configured_features_and_k_else_commonest_and_largest() -> None:
    def row(variant: str, k: int, features: str, seed: int = 1) -> MetricRow:
        return MetricRow("din", variant, seed, k, features, "dev", "all", "auc", 0.6)

    index = index_runs([row("original", 0, "title"), row("original", 0, "title", 2), row("ng", 1, "title"),
                        row("ng", 3, "title"), row("original", 0, "title,abstract")])
    assert main_features(index, "title,category") == "title"  # default not stored: commonest
    assert main_features(index, "abstract,title") == "title,abstract"
    assert main_key(index, "din", "ng", "title", default_k=1) == ConfigKey("din", "ng", 1, "title")
    assert main_key(index, "din", "ng", "title", default_k=2) == ConfigKey("din", "ng", 3, "title")
    assert main_key(index, "din", "chain", "title", default_k=2) is None


# ------------------------------------------------------------------------------------------
# Table 6, Fig. 7, Table 7, Fig. 6
# ------------------------------------------------------------------------------------------
def test_user_groups_compare_new_and_warm_users(db: Path) -> None:
    with open_store(db) as store:
        add_run(store, "d", "lstur", "original", 1, all_metrics(0.6, groups=("all", "new", "warm"))
                | {("new", "auc"): 0.55, ("warm", "auc"): 0.65})
        add_run(store, "d", "lstur", "ng", 1, all_metrics(0.6, groups=("all", "new", "warm"))
                | {("new", "auc"): 0.60, ("warm", "auc"): 0.66}, ng_k=2)
    comps = user_group_table(load_index(db), FEATURES, default_k=2)
    auc = {c.group: c for c in comps if c.metric == "auc"}
    assert set(auc) == {"new", "warm"}
    assert auc["new"].improvement == approx(0.05)
    assert auc["warm"].improvement == approx(0.01)
    assert all(c.other_key.ng_k == 2 for c in comps)


def test_ng_k_curve_takes_k0_from_original_and_needs_two_points(db: Path) -> None:
    with open_store(db) as store:
        for seed in (1, 2):
            add_run(store, "d", "nrms", "original", seed, all_metrics(0.60 + seed / 100))
            add_run(store, "d", "nrms", "ng", seed, all_metrics(0.63 + seed / 100), ng_k=1)
            add_run(store, "d", "nrms", "ng", seed, all_metrics(0.65 + seed / 100), ng_k=2)
        add_run(store, "d", "din", "ng", 1, all_metrics(0.7), ng_k=2)  # a single point: no curve
    points = [p for p in ng_k_curve(load_index(db), FEATURES) if p.metric == "auc"]
    assert [(p.model, p.ng_k, p.source) for p in points] == [("nrms", 0, "original"), ("nrms", 1, "ng"),
                                                            ("nrms", 2, "ng")]
    assert [p.summary.mean for p in points] == [approx(0.615), approx(0.645), approx(0.665)]


def test_chain_table_against_original_and_one_pass(db: Path) -> None:
    with open_store(db) as store:
        add_run(store, "d", "bst", "original", 1, all_metrics(0.60))
        add_run(store, "d", "bst", "ng", 1, all_metrics(0.62), ng_k=2)
        add_run(store, "d", "bst", "chain", 1, all_metrics(0.65), ng_k=2)
        add_run(store, "d", "dcn", "original", 1, all_metrics(0.70))
        add_run(store, "d", "dcn", "chain", 1, all_metrics(0.71), ng_k=2)  # no one-pass run
    rows = {r.model: r for r in chain_table(load_index(db), FEATURES, default_k=2) if r.metric == "auc"}
    assert rows["bst"].one_pass_improvement == approx(0.02)
    assert rows["bst"].chain_improvement == approx(0.05)
    assert rows["dcn"].one_pass is None and rows["dcn"].one_pass_improvement is None
    assert rows["dcn"].chain_improvement == approx(0.01)


def test_feature_ablation_lists_models_trained_with_several_feature_sets(db: Path) -> None:
    with open_store(db) as store:
        add_run(store, "d", "nrms", "original", 1, all_metrics(0.60))
        add_run(store, "d", "nrms", "original", 1, all_metrics(0.64), features="title,abstract,category")
        add_run(store, "d", "din", "original", 1, all_metrics(0.70))  # one feature set only
    rows = [r for r in feature_ablation(load_index(db), 2) if r.metric == "auc"]
    assert [(r.model, r.features, r.summary.mean) for r in rows] == [
        ("nrms", "title,category", approx(0.60)), ("nrms", "title,abstract,category", approx(0.64))]


# ------------------------------------------------------------------------------------------
# Table 8: cost and CCR
# ------------------------------------------------------------------------------------------
def seed_cost_runs(store) -> None:
    add_run(store, "d", "naml", "original", 1, all_metrics(0.60))
    add_run(store, "d", "naml", "ns", 1, all_metrics(0.62))
    add_run(store, "d", "nrms", "original", 1, all_metrics(0.70))
    add_run(store, "d", "nrms", "ns", 1, all_metrics(0.71))
    add_run(store, "d", "din", "original", 1, all_metrics(0.65))
    add_run(store, "d", "din", "ns", 1, all_metrics(0.68))
    add_run(store, "d", "din", "chain", 1, all_metrics(0.69), ng_k=2)


def test_cost_table_ccr_per_engine_hour_without_a_price(db: Path) -> None:
    with open_store(db) as store:
        seed_cost_runs(store)
        add_generation_run(store, "d", "summarize", engine_seconds=1200.0, prompt_tokens=500)
        add_generation_run(store, "d", "summarize", engine_seconds=600.0, prompt_tokens=100)  # a second run adds
        add_generation_run(store, "d", "profile", engine_seconds=1800.0)
        add_generation_run(store, "d", "chain", engine_seconds=1800.0)
        add_generation_run(store, "other", "news", engine_seconds=5.0)  # another dataset
        gen = load_generation_runs(store, "d")
    rows = {r.scheme: r for r in cost_table(gen, load_index(db), FEATURES, default_k=2)}
    assert list(rows) == ["NS", "UP", "chain"]  # no NG generation stored
    ns = rows["NS"]
    assert (ns.unit, ns.runs, ns.prompt_tokens, ns.engine_hours) == ("engine-hour", 2, 600, approx(0.5))
    assert ns.matching_improvement == approx(0.015) and ns.matching_models == 2  # (0.02 + 0.01) / 2
    assert ns.ranking_improvement == approx(0.03) and ns.ranking_models == 1
    assert ns.matching_ccr == approx(0.03)  # 0.015 AUC per 0.5 engine-hour
    assert ns.ranking_ccr == approx(0.06)
    chain = rows["chain"]
    assert chain.tasks == ("profile", "chain") and chain.engine_hours == approx(1.0)  # profiler paid too
    assert chain.ranking_ccr == approx(0.04) and chain.matching_improvement is None
    assert rows["UP"].matching_ccr is None  # no up runs trained


def test_cost_table_uses_money_only_when_every_run_has_a_price(db: Path) -> None:
    with open_store(db) as store:
        seed_cost_runs(store)
        add_generation_run(store, "d", "summarize", wall_seconds=3000.0, startup_seconds=600.0, price_per_hour=2.0)
        priced = load_generation_runs(store, "d")
        add_generation_run(store, "d", "news", engine_seconds=3600.0)
        mixed = load_generation_runs(store, "d")
    index = load_index(db)
    ns = cost_table(priced, index, FEATURES, 2)[0]
    assert (ns.unit, ns.money, ns.cost_units) == ("price", approx(2.0), approx(2.0))  # 2/h * (3000+600) s
    assert ns.matching_ccr == approx(0.0075)
    mixed_rows = cost_table(mixed, index, FEATURES, 2)
    assert {r.unit for r in mixed_rows} == {"engine-hour"}  # one unit for all schemes
    assert mixed_rows[0].matching_ccr == approx(0.015 / 0.01)  # 36 engine s = 0.01 h


def _plot_texts(ax) -> tuple[list[str], list[str]]:
    """An axes' legend entries and the notes written on it (annotations)."""
    legend = ax.get_legend()
    return ([t.get_text() for t in legend.get_texts()] if legend else []), [t.get_text() for t in ax.texts]


def test_cost_plot_has_no_legend_entry_without_bars_and_says_what_was_not_trained(
        db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: with no ranking model trained, the CCR panel's legend listed "ranking
    models" with no bar anywhere; the plot must name it as not trained instead."""
    from genre_local.report import figures
    from genre_local.report.views.cost import plot_cost

    drawn = []
    real_save = figures.save
    monkeypatch.setattr(figures, "save", lambda fig, path: drawn.append(fig) or real_save(fig, path))

    def ccr_panel(rows):
        plot_cost(rows, "d", tmp_path / "cost.png")
        return drawn[-1].axes[1]

    with open_store(db) as store:
        for seed in (1, 2):
            add_run(store, "d", "nrms", "original", seed, all_metrics(0.70))
            add_run(store, "d", "nrms", "ns", seed, all_metrics(0.72))
        add_generation_run(store, "d", "summarize", engine_seconds=1800.0)
        add_generation_run(store, "d", "profile", engine_seconds=1800.0)  # UP: generated, never trained
        gen = load_generation_runs(store, "d")
    rows = cost_table(gen, load_index(db), FEATURES, default_k=2)
    assert [r.scheme for r in rows] == ["NS", "UP", "chain"] and rows[0].ranking_models == 0
    legend, notes = _plot_texts(ccr_panel(rows))
    assert legend == ["matching models"]
    assert "ranking models: not trained" in notes
    assert notes.count("not trained") == 2  # UP and chain, where neither kind has a bar
    # Both kinds trained: both in the legend, no note.
    with open_store(db) as store:
        for seed in (1, 2):
            add_run(store, "d", "din", "original", seed, all_metrics(0.65))
            add_run(store, "d", "din", "ns", seed, all_metrics(0.66))
    both = ccr_panel(cost_table(gen, load_index(db), FEATURES, default_k=2))
    assert _plot_texts(both) == (["matching models", "ranking models"], ["not trained", "not trained"])
    # Gains without a known cost (an imported source's runs): no bar, and the plot says why.
    import dataclasses

    unknown = [dataclasses.replace(r, provenance="imported") for r in rows]
    assert _plot_texts(ccr_panel(unknown)) == ([], ["cost unknown", "not trained", "not trained",
                                                    "matching models: cost unknown\nranking models: not trained"])
    # Regression: the cost panel left an imported scheme's bar out without a word, as if it cost 0.
    assert _plot_texts(drawn[-1].axes[0])[1] == ["cost unknown (imported)"] * 3
    assert _plot_texts(drawn[-2].axes[0])[1] == []  # every generated scheme's cost is known


def test_zero_cost_gives_no_ccr() -> None:
    run = GenerationRunRow("g", "news", "llama", "vllm", 1, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, None, None)
    rows = index_runs([MetricRow("nrms", v, 1, 2, FEATURES, "dev", "all", "auc", a)
                       for v, a in (("original", 0.6), ("ng", 0.7))])
    (row,) = cost_table([run], rows, FEATURES, 2)
    assert row.matching_improvement == approx(0.1) and row.matching_ccr is None


# ------------------------------------------------------------------------------------------
# Files and the command
# ------------------------------------------------------------------------------------------
def fill_everything(db: Path) -> None:
    with open_store(db) as store:
        for seed in (1, 2):
            for model, base in (("nrms", 0.60), ("din", 0.65)):
                g = ("all", "new", "warm")
                add_run(store, "d", model, "original", seed, all_metrics(base + seed / 200, groups=g))
                add_run(store, "d", model, "ns", seed, all_metrics(base + 0.01 + seed / 100, groups=g))
                add_run(store, "d", model, "ng", seed, all_metrics(base + 0.02 + seed / 300, groups=g), ng_k=2)
                add_run(store, "d", model, "ng", seed, all_metrics(base + 0.01 + seed / 300, groups=g), ng_k=1)
                add_run(store, "d", model, "chain", seed, all_metrics(base + 0.03, groups=g), ng_k=2)
                add_run(store, "d", model, "ns", seed, all_metrics(base + 0.02, groups=g),
                        features="title,abstract,category")
        for task in ("summarize", "profile", "news", "chain"):
            add_generation_run(store, "d", task)
        add_fidelity(store, "d", 0.6, 0.5, 0.25)
        add_generation(store, "d", "profile", "U1", {"topics": ["finance"], "regions": ["Ohio"]})  # Table 1


EXPECTED_FILES = {
    "enrichment.csv": None,
    "variants.csv": ("model", "kind", "variant", "generation_source", "ng_k", "features", "group", "metric",
                     "original_mean",
                     "original_std", "original_seeds", "variant_mean", "variant_std", "variant_seeds",
                     "improvement", "improvement_pct", "p_value", "settings_differ"),
    "user_groups.csv": None,
    "ng_k.csv": ("model", "kind", "ng_k", "source", "generation_source", "metric", "mean", "std", "seeds",
                 "settings_differ"),
    "chain.csv": None,
    "feature_ablation.csv": ("model", "kind", "variant", "generation_source", "features", "metric", "mean", "std",
                             "seeds", "settings_differ"),
    "cost.csv": None,
    "profile_fidelity.csv": ("run_id", "model", "generation_source", "round", "precision_at_3", "chance_precision_at_3",
                             "precision_at_3_ratio_to_chance", "recall", "chance_recall", "recall_ratio_to_chance",
                             "region_accuracy", "chance_region_accuracy", "region_accuracy_ratio_to_chance",
                             "users", "created_at"),
    "epoch_curves.csv": ("run_id", "model", "variant", "ng_k", "generation_source", "features", "seed", "epoch", "dev_auc",
                         "stop_split", "samples_per_s", "seconds", "autocast"),
}
PLOTS = ("variants_auc.png", "user_groups.png", "ng_k.png", "chain.png", "feature_ablation.png", "cost.png",
         "epoch_curves.png")


def test_report_command_writes_every_view(db: Path, tmp_path: Path) -> None:
    fill_everything(db)
    out = tmp_path / "rep"
    result = runner.invoke(app, ["--db", str(db), "report", "--dataset", "d", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    folder = out  # --dataset with --out: the folder itself
    assert f"report for d: {folder}" in result.stdout
    assert "skipped" not in result.stdout
    # din original AUC over seeds 0.655 and 0.66: mean 0.6575, sample std 0.0035355
    assert "0.6575 ± 0.0035" in result.stdout
    assert "Table 8a" in result.stdout and "Table 7" in result.stdout and "Fig. 7" in result.stdout
    # Regression: Rich read "[title,category]" in the training curves' labels as markup and dropped it.
    assert "[title,category] seed 1" in result.stdout
    for name, header in EXPECTED_FILES.items():
        with (folder / name).open(newline="") as handle:
            rows = list(csv.reader(handle))
        assert len(rows) > 1, name
        if header:
            assert tuple(rows[0]) == header
    cost_header = (folder / "cost.csv").read_text().splitlines()[0].split(",")
    assert {"scheme", "engine_seconds", "cost_unit", "matching_ccr", "ranking_ccr"} <= set(cost_header)
    with (folder / "variants.csv").open(newline="") as handle:
        auc_ns = [r for r in csv.DictReader(handle) if (r["model"], r["variant"], r["metric"]) == ("din", "ns", "auc")]
    # original seeds 0.655, 0.66 ; ns seeds 0.67, 0.68 -> gain 0.0175
    assert float(auc_ns[0]["improvement"]) == pytest.approx(0.0175)
    assert auc_ns[0]["original_seeds"] == "1 2"
    for name in PLOTS:
        data = (folder / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 15_000, name
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    views = payload["datasets"]["d"]["views"]
    assert all("skipped" not in v for v in views.values())
    assert views["ng_k"]["rows"] == 2 * 3 * 4  # two models, K = 0, 1, 2, four metrics
    assert payload["datasets"]["d"]["superseded_runs"] == 0 and "left out" not in result.stdout
    # Every run trained the same way: no settings note anywhere (no noise), the column empty.
    assert "not like for like" not in result.stdout and "Not like for like" not in (folder / "index.html").read_text()
    assert all(v["settings_differ"] == [] for v in views.values() if "rows" in v)
    for name in ("variants.csv", "user_groups.csv", "ng_k.csv", "chain.csv", "feature_ablation.csv", "cost.csv"):
        with (folder / name).open(newline="") as handle:
            assert {r["settings_differ"] for r in csv.DictReader(handle)} == {""}, name


def test_report_says_where_the_runs_compared_were_trained_with_other_settings(db: Path, tmp_path: Path) -> None:
    """Regression: the report mixed seeds trained with other settings in one configuration, and
    compared a variant with an original trained otherwise, silently. It still counts the newest
    run per configuration and seed, and names the configurations and the settings that differ
    with their values: under the tables, in the HTML, in --json and in a CSV column to filter on.
    Interest fusion is the variant's own (original reads no profile): no note for it."""
    same = {"lr": 0.001, "epochs": 3, "interest_fusion": "gated"}
    with open_store(db) as store:
        for seed in range(1, 6):
            add_run(store, "d", "nrms", "original", seed, all_metrics(0.60 + seed / 100), config=same)
            add_run(store, "d", "nrms", "ns", seed, all_metrics(0.62 + seed / 100),
                    config=same | {"lr": 0.001 if seed < 5 else 0.0001})
            add_run(store, "d", "nrms", "up", seed, all_metrics(0.63 + seed / 100),
                    config=same | {"interest_fusion": "concat"})
        for seed in (1, 2):
            add_run(store, "d", "din", "original", seed, all_metrics(0.65), config=same)
            add_run(store, "d", "din", "ns", seed, all_metrics(0.70), config=same | {"epochs": 5})
    index = load_index(db)
    ns_key = ConfigKey("nrms", "ns", 0, FEATURES)
    assert index.settings_note([ns_key]) == "nrms ns: lr 0.001 (seeds 1-4) vs 0.0001 (seed 5)"
    notes = {(c.model, c.other_key.variant): c.settings_note
             for t in variant_tables(index, FEATURES, default_k=2) for c in t.comparisons}
    nrms_ns = "nrms original vs ns: lr 0.001 (original seeds 1-5, ns seeds 1-4) vs 0.0001 (ns seed 5)"
    din_ns = "din original vs ns: epochs 3 (original seeds 1-2) vs 5 (ns seeds 1-2)"
    assert notes == {("nrms", "ns"): nrms_ns, ("nrms", "up"): None, ("din", "ns"): din_ns}

    out = tmp_path / "rep"
    result = runner.invoke(app, ["--db", str(db), "report", "--dataset", "d", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    printed = " ".join(result.stdout.split())
    assert "not like for like" in printed and nrms_ns in printed and din_ns in printed
    assert printed.count("not like for like") == 1  # under the ns table only: the up table compares like with like
    views = json.loads(result.stdout.strip().splitlines()[-1])["datasets"]["d"]["views"]
    assert views["variants"]["settings_differ"] == [nrms_ns, din_ns]
    with (out / "variants.csv").open(newline="") as handle:
        flagged = {(r["model"], r["variant"]): r["settings_differ"] for r in csv.DictReader(handle)}
    assert flagged == {("nrms", "ns"): nrms_ns, ("nrms", "up"): "", ("din", "ns"): din_ns}
    html = (out / "index.html").read_text()
    assert "Not like for like" in html and "lr 0.001 (original seeds 1-5, ns seeds 1-4)" in html


def test_chain_ng_k_ablation_and_cost_rows_name_the_settings_their_runs_differ_in(db: Path) -> None:
    """Each view that sets configurations side by side marks its rows whose runs were trained
    with other settings (the settings_differ CSV column), and only those."""
    same, longer, faster = {"lr": 0.001, "epochs": 3}, {"lr": 0.001, "epochs": 5}, {"lr": 0.01, "epochs": 3}
    llm = ("llama", "compact")
    with open_store(db) as store:
        for seed in (1, 2):
            add_run(store, "d", "din", "original", seed, all_metrics(0.60), config=same)
            add_run(store, "d", "din", "original", seed, all_metrics(0.61), config=faster, features="title")
            add_run(store, "d", "din", "ng", seed, all_metrics(0.62), config=same, ng_k=1, source=llm)
            add_run(store, "d", "din", "ng", seed, all_metrics(0.63), config=longer, ng_k=2, source=llm)
            add_run(store, "d", "din", "chain", seed, all_metrics(0.64), config=same, ng_k=2, source=llm)
        add_generation_run(store, "d", "news")
        runs = load_generation_runs(store, "d")
    index = load_index(db)
    epochs = "epochs 3 (original seeds 1-2, chain K=2 · llama/compact seeds 1-2) vs 5 (ng K=2 · llama/compact seeds 1-2)"
    assert {r.settings_note for r in chain_table(index, FEATURES, default_k=2)} == {
        f"din original vs chain K=2 · llama/compact vs ng K=2 · llama/compact: {epochs}"}
    curve = {p.ng_k: p.settings_note for p in ng_k_curve(index, FEATURES)}
    assert set(curve) == {0, 1, 2} and len(set(curve.values())) == 1 and "epochs 3 (" in curve[0]
    assert "5 (ng K=2 · llama/compact seeds 1-2)" in curve[0]
    ablation = {(r.variant, r.features): r.settings_note for r in feature_ablation(index, default_k=2)}
    assert ablation == {(v, f): "din original [title] vs original [title,category]: lr 0.01 (original [title] "
                                "seeds 1-2) vs 0.001 (original [title,category] seeds 1-2)"
                        for v, f in (("original", "title"), ("original", FEATURES))}
    ng_cost = [r for r in cost_table(runs, index, FEATURES, default_k=2) if r.variant == "ng"]
    assert [r.settings_note for r in ng_cost] == [
        "din original vs ng K=2 · llama/compact: epochs 3 (original seeds 1-2) vs 5 (ng K=2 · llama/compact seeds 1-2)"]
    # The same runs with the longer ng retrained like the others: nothing to say.
    with open_store(db) as store:
        for seed in (1, 2):
            add_run(store, "d", "din", "ng", seed, all_metrics(0.63), config=same, ng_k=2, source=llm)
    index = load_index(db)
    assert {r.settings_note for r in chain_table(index, FEATURES, default_k=2)} == {None}
    assert {p.settings_note for p in ng_k_curve(index, FEATURES)} == {None}
    assert {r.settings_note for r in cost_table(runs, index, FEATURES, default_k=2) if r.variant == "ng"} == {None}


def test_views_without_data_are_skipped_with_one_line_notes(db: Path, tmp_path: Path) -> None:
    with open_store(db) as store:
        # only a baseline, without epoch rows (as a run stored before run_epochs existed)
        add_run(store, "d", "nrms", "original", 1, all_metrics(0.6), stop_auc=())
    out = tmp_path / "rep"
    result = runner.invoke(app, ["--db", str(db), "report", "--dataset", "d", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stdout.splitlines() if line.startswith("skipped ")]
    assert len(notes) == 9
    assert any("Table 1" in n and "no valid generation stored for dataset 'd'" in n for n in notes)
    assert any("Training curves" in n and "no training runs stored" in n for n in notes)
    assert any("Table 8" in n and "no generation runs stored" in n for n in notes)
    assert "nothing stored to report yet" in result.stdout
    assert not out.exists()
    views = json.loads(result.stdout.strip().splitlines()[-1])["datasets"]["d"]["views"]
    assert all("skipped" in v for v in views.values())


def test_report_covers_every_dataset_by_default_one_subfolder_each(db: Path, tmp_path: Path) -> None:
    with open_store(db) as store:
        add_fidelity(store, "other", 0.5, 0.5, 0.5)
        add_fidelity(store, "d", 0.4, 0.4, 0.4)
    result = runner.invoke(app, ["--db", str(db), "report", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert (db.parent / "reports" / "other" / "profile_fidelity.csv").exists()
    assert (db.parent / "reports" / "d" / "profile_fidelity.csv").exists()
    assert "GENRE report: d" in result.stdout and "GENRE report: other" in result.stdout
    result = runner.invoke(app, ["--db", str(db), "report", "--no-plots", "--dataset", "d"])
    assert f"report for d: {db.parent / 'reports' / 'd'}" in result.stdout
    result = runner.invoke(app, ["--db", str(db), "report", "--no-plots", "--out", str(tmp_path / "all")])
    assert (tmp_path / "all" / "other" / "profile_fidelity.csv").exists()


def test_unknown_dataset_is_one_line_exit_2(db: Path) -> None:
    result = runner.invoke(app, ["--db", str(db), "report", "--dataset", "x"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "dataset 'x'" in lines[0] and "known: d, other" in lines[0]


def test_missing_store_and_empty_store_are_one_line_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--db", str(tmp_path / "none.duckdb"), "report"])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert not (tmp_path / "none.duckdb").exists()
    empty = tmp_path / "empty.duckdb"
    open_store(empty).close()
    result = runner.invoke(app, ["--db", str(empty), "report"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "holds no dataset" in result.stderr


def test_out_that_is_a_file_is_one_line_exit_2(db: Path, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("x")
    result = runner.invoke(app, ["--db", str(db), "report", "--dataset", "d", "--out", str(target)])
    assert result.exit_code == 2 and "is a file" in result.stderr


def test_build_report_without_plots_writes_only_csv(db: Path, tmp_path: Path) -> None:
    fill_everything(db)
    with open_store(db) as store:
        inputs = ReportInputs("d", load_metric_rows(store, "d"), load_generation_runs(store, "d"),
                              load_fidelity(store, "d"), FEATURES, 2, epochs=load_epoch_rows(store, "d"),
                              enrichment=load_enrichment_stats(store.conn, "d"))
    report = build_report(inputs, tmp_path / "o", with_plots=False)
    files = sorted(p.name for r in report.views for p in r.files)
    assert files == sorted(EXPECTED_FILES)
    assert report.html == tmp_path / "o" / "index.html"  # the page beside the CSV files
    assert "<img" not in report.html.read_text()  # no plots drawn, none embedded


def test_chain_table_scores_every_column_on_the_sources_chain_cohort(db: Path) -> None:
    cohort = {"a/compact": "chain-cohort:a/compact", "b/compact": "chain-cohort:b/compact"}
    with open_store(db) as store:
        for seed in (1, 2):
            add_run(store, "d", "bst", "original", seed, all_metrics(0.60) | {
                (cohort["a/compact"], "auc"): 0.50, (cohort["b/compact"], "auc"): 0.55})
            for src, ng, chain in (("a", 0.52, 0.58), ("b", 0.56, 0.57)):
                group = cohort[f"{src}/compact"]
                add_run(store, "d", "bst", "ng", seed, all_metrics(0.61) | {(group, "auc"): ng}, ng_k=2,
                        source=(src, "compact"))
                add_run(store, "d", "bst", "chain", seed, all_metrics(0.62) | {(group, "auc"): chain}, ng_k=2,
                        source=(src, "compact"))
        add_run(store, "d", "dcn", "original", 1, all_metrics(0.70))  # stored before cohorts existed
        add_run(store, "d", "dcn", "chain", 1, all_metrics(0.71), ng_k=2, source=("a", "compact"))
    rows = {(r.model, r.source): r for r in chain_table(load_index(db), FEATURES, 2, {"a/compact": 40})
            if r.metric == "auc"}
    assert set(rows) == {("bst", "a/compact"), ("bst", "b/compact"), ("dcn", "a/compact")}
    a, b, old = rows[("bst", "a/compact")], rows[("bst", "b/compact")], rows[("dcn", "a/compact")]
    assert (a.original.mean, a.one_pass.mean, a.chain.mean) == (approx(0.50), approx(0.52), approx(0.58))
    assert (b.original.mean, b.one_pass.mean, b.chain.mean) == (approx(0.55), approx(0.56), approx(0.57))
    assert a.on_cohort and a.users_label == "Chain cohort, 40 users" and b.users_label == "Chain cohort"
    assert not old.on_cohort and old.chain_improvement == approx(0.01) and "retrain" in old.users_label


def test_views_keep_each_generation_source_apart(db: Path) -> None:
    """Fig. 6, Fig. 7 and Table 6 show one row group (curve) per LLM source, as Tables 3-5 do."""
    groups = ("all", "new", "warm", "empty")
    with open_store(db) as store:
        add_run(store, "d", "nrms", "original", 1, all_metrics(0.60, groups=groups))
        for src, auc in (("a", 0.62), ("b", 0.70)):
            for k in (1, 2):
                add_run(store, "d", "nrms", "ng", 1, all_metrics(auc + k / 100, groups=groups), ng_k=k,
                        source=(src, "compact"))
            add_run(store, "d", "nrms", "ng", 1, all_metrics(auc - 0.05), ng_k=2, features="title",
                    source=(src, "compact"))
    index = load_index(db)
    curve = {(p.generation_source, p.ng_k): p.summary.mean for p in ng_k_curve(index, FEATURES) if p.metric == "auc"}
    assert curve == {("a/compact", 0): approx(0.60), ("a/compact", 1): approx(0.63), ("a/compact", 2): approx(0.64),
                     ("b/compact", 0): approx(0.60), ("b/compact", 1): approx(0.71), ("b/compact", 2): approx(0.72)}
    ablation = {(r.data, r.features): r.summary.mean for r in feature_ablation(index, 2)
                if r.metric == "auc" and r.variant == "ng"}
    assert ablation == {("ng · a/compact", "title"): approx(0.57), ("ng · a/compact", FEATURES): approx(0.64),
                        ("ng · b/compact", "title"): approx(0.65), ("ng · b/compact", FEATURES): approx(0.72)}
    table6 = {(c.other_key.source, c.group): c.other.mean for c in user_group_table(index, FEATURES, 2)
              if c.metric == "auc"}
    assert table6 == {(s, g): approx(v) for s, v in (("a/compact", 0.64), ("b/compact", 0.72))
                      for g in ("new", "warm", "empty")}
