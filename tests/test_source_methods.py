"""Issue 9 §1: the profile method is part of a generation source. Profiles written, scored and
labelled by one (LLM, prompt set) are three sources (LLM/SET, LLM/SET+score, LLM/SET+label):
they never mix in a view or a variant, runs and costs name them, and --llm picks one."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.errors import UserError
from genre_local.store import open_store
from genre_local.store.generations import (
    GenerationSource,
    complete_sources,
    read_synthetic_news,
    read_user_profiles,
    sources_with_tasks,
)
from genre_local.store.variants import content_fingerprint, read_variant, resolve_source, variant_tasks
from recsys.variants import parse_variant
from tests.support_train import add_generation, make_store

runner = CliRunner()
GEN = GenerationSource("m", "compact")
SCORE = GenerationSource("m", "compact", "score")
LABEL = GenerationSource("m", "compact", "label")
USERS = 8


def _chain_items(word: str) -> dict:
    return {"items": [{"title": f"{word} news {k}", "abstract": "", "category": "news"} for k in range(2)]}


def _two_methods(path: Path) -> Path:
    """Enhanced titles; generated profiles (health) and NEWER scored ones (finance) for every user;
    the chain's news of each; one-pass news."""
    db = make_store(path, users=USERS, news_per_cat=3)
    with open_store(db) as store:
        for nid in ("N1", "N2"):
            add_generation(store, "tiny", "summarize", nid, {"title": f"enhanced {nid}"})
        for u in range(USERS):
            user = f"U{u}"
            add_generation(store, "tiny", "profile", user, {"topics": ["health"], "regions": ["Ohio"]},
                           created=datetime(2026, 1, 1))
            add_generation(store, "tiny", "profile", user, {"topics": ["finance"], "regions": ["Texas"]},
                           created=datetime(2026, 1, 2), sampling={"method": "score"})
            add_generation(store, "tiny", "chain", user, _chain_items("generated"), created=datetime(2026, 1, 1))
            add_generation(store, "tiny", "chain", user, _chain_items("scored"), created=datetime(2026, 1, 2),
                           sampling={"profile_method": "score"})
            add_generation(store, "tiny", "news", user, _chain_items("one-pass"))
    return db


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return _two_methods(tmp_path_factory.mktemp("methods") / "s.duckdb")


def test_the_views_keep_one_profile_per_method_and_never_mix(db: Path) -> None:
    with open_store(db, read_only=True) as store:
        rows = store.conn.execute("SELECT method, list_distinct(flatten(list(topics))), count(*) FROM user_profiles "
                                  "GROUP BY method ORDER BY method").fetchall()
        # The newer scored profile does not replace the generated one: each method keeps its own.
        assert rows == [("generate", ["health"], USERS), ("score", ["finance"], USERS)]
        assert {p.topics[0] for p in read_user_profiles(store.conn, "tiny", GEN).values()} == {"health"}
        assert {p.topics[0] for p in read_user_profiles(store.conn, "tiny", SCORE).values()} == {"finance"}
        chain = {s.label: {i.title.split()[0] for i in read_synthetic_news(store.conn, "tiny", "chain", s)}
                 for s in (GEN, SCORE)}
        assert chain == {GEN.label: {"generated"}, SCORE.label: {"scored"}}
        # One-pass news read no profile: every method's source reads the same ones.
        assert read_synthetic_news(store.conn, "tiny", "news", SCORE) == read_synthetic_news(store.conn, "tiny", "news", GEN)


def test_two_methods_give_two_different_up_and_chain_datasets(db: Path) -> None:
    with open_store(db, read_only=True) as store:
        for variant in ("up", "chain", "ns+up"):
            assert sources_with_tasks(store.conn, "tiny", variant_tasks(parse_variant(variant))) == [GEN, SCORE]
        up = parse_variant("up")
        gen_rows, score_rows = (read_variant(store.conn, "tiny", up, s) for s in (GEN, SCORE))
        assert {t[0] for t, _ in gen_rows.profiles.values()} == {"health"}
        assert {t[0] for t, _ in score_rows.profiles.values()} == {"finance"}
        assert content_fingerprint(store.conn, "tiny", up, GEN) != content_fingerprint(store.conn, "tiny", up, SCORE)
        chain = parse_variant("chain")
        gen_titles, score_titles = (set(read_variant(store.conn, "tiny", chain, s).news.titles) for s in (GEN, SCORE))
        assert "generated news 0" in gen_titles and "scored news 0" not in gen_titles
        assert "scored news 0" in score_titles and "generated news 0" not in score_titles
        # A variant that reads no profile has one source whatever the methods stored.
        assert sources_with_tasks(store.conn, "tiny", ["summarize"]) == [GEN]
        assert sources_with_tasks(store.conn, "tiny", ["news"]) == [GEN]


def test_no_choice_among_methods_is_an_error_and_llm_picks_one(db: Path) -> None:
    with open_store(db, read_only=True) as store:
        up = parse_variant("up")
        with pytest.raises(UserError, match=r"2 generation sources \(m/compact, m/compact\+score\); pick one with --llm"):
            resolve_source(store.conn, "tiny", up, None)
        assert resolve_source(store.conn, "tiny", up, "m/compact+score") == SCORE
        assert resolve_source(store.conn, "tiny", up, "m+score") == SCORE
        assert resolve_source(store.conn, "tiny", up, "m/compact") == GEN  # the full label of the generated ones
        assert resolve_source(store.conn, "tiny", up, "m/compact+generate") == GEN
        with pytest.raises(UserError, match=r"--llm 'm' names 2 sources.*\+method\] label"):
            resolve_source(store.conn, "tiny", up, "m")
        with pytest.raises(UserError, match=r"--llm 'm\+label' names no generation source.*m/compact\+score"):
            resolve_source(store.conn, "tiny", up, "m+label")
        # ns reads no profile: the method suffix names nothing there.
        assert resolve_source(store.conn, "tiny", parse_variant("ns"), None) == GEN
        with pytest.raises(UserError, match="names no generation source"):
            resolve_source(store.conn, "tiny", parse_variant("ns"), "m+score")


def test_complete_sources_needs_every_profile_task_of_one_method() -> None:
    rows = [("m", "compact", "summarize", "generate"), ("m", "compact", "profile", "score"),
            ("m", "compact", "profile", "label"), ("m", "compact", "chain", "label"),
            ("n", "paper", "profile", "generate")]
    assert complete_sources(rows, ["profile", "chain"]) == [LABEL]
    assert complete_sources(rows, ["summarize", "profile"]) == [LABEL, SCORE]  # n/paper has no titles
    assert complete_sources(rows, ["summarize"]) == [GEN]
    assert complete_sources(rows, ["profile"]) == [LABEL, SCORE, GenerationSource("n", "paper")]
    assert [s.label for s in complete_sources(rows, ["profile"])] == ["m/compact+label", "m/compact+score", "n/paper"]


def test_train_without_a_choice_is_one_line_exit_2(db: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["--db", str(db), "train", "--model", "nrms", "--dataset", "tiny", "--variant", "up"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "m/compact, m/compact+score" in lines[0] and "--llm" in lines[0]


def test_runs_report_and_costs_name_the_method(tmp_path: Path) -> None:
    from genre_local.report.runs import index_runs
    from genre_local.report.views.chain import chain_table
    from genre_local.report.views.cost import cost_table
    from genre_local.store.results import load_generation_runs, load_metric_rows
    from tests.support_report import add_dataset, add_generation_run, add_run, all_metrics

    with open_store(tmp_path / "r.duckdb") as store:
        add_dataset(store, "d")
        for seed, auc in ((1, 0.60), (2, 0.62)):
            add_run(store, "d", "nrms", "original", seed, all_metrics(auc))
            add_run(store, "d", "nrms", "up", seed, all_metrics(auc + 0.04), source=("m", "compact"))
            add_run(store, "d", "nrms", "up", seed, all_metrics(auc + 0.02), source=("m", "compact", "score"))
            add_run(store, "d", "nrms", "ng", seed, all_metrics(0.62), ng_k=2, source=("m", "compact"))
            add_run(store, "d", "nrms", "chain", seed, all_metrics(0.63), ng_k=2, source=("m", "compact", "score"))
        add_generation_run(store, "d", "profile", model="m", engine_seconds=3600.0)
        add_generation_run(store, "d", "profile", model="m", engine_seconds=7200.0, method="score")
        index = index_runs(load_metric_rows(store, "d"))
        rows = cost_table(load_generation_runs(store, "d"), index, "title,category", 2)
    assert index.sources("up") == [GEN.label, SCORE.label]  # two report entries
    # Table 7: the chain of scored profiles beside the one-pass ng of the same LLM and set (ng
    # reads no profile, so its runs' source has no method), with the gain of each.
    chain = {r.source: r for r in chain_table(index, "title,category", 2) if r.metric == "auc"}
    assert set(chain) == {SCORE.label}
    assert chain[SCORE.label].one_pass is not None and chain[SCORE.label].one_pass.mean == pytest.approx(0.62)
    up = {r.source: r for r in rows if r.scheme == "UP"}
    assert set(up) == {GEN.label, SCORE.label}
    # each method's own engine time beside its own gain: 0.04 per hour vs 0.02 per two hours
    assert up[GEN.label].matching_ccr == pytest.approx(0.04)
    assert up[SCORE.label].matching_ccr == pytest.approx(0.01)


def test_generations_list_names_the_method_and_where_labels_are_charged(tmp_path: Path) -> None:
    from genre_local.store.results import load_fidelity
    from tests.support_report import add_generation_run

    db = make_store(tmp_path / "l.duckdb", users=4, news_per_cat=2)
    with open_store(db) as store:
        for nid in ("N1", "N2"):
            add_generation(store, "tiny", "label", nid, {"topic": "health", "state": None}, run_id="r1")
        add_generation(store, "tiny", "profile", "U0", {"topics": ["health"], "regions": []}, run_id="r1",
                       sampling={"method": "label"})
        add_generation_run(store, "tiny", "profile", run_id="r1", model="m", engine_seconds=12.5, method="label")
        store.conn.execute("INSERT INTO profile_fidelity BY NAME SELECT 'tiny' AS dataset, 'r1' AS run_id, 'm' AS model, "
                           "1 AS round, 0.5 AS precision_at_3, 0.5 AS recall, 0.0 AS region_accuracy, 1 AS users, "
                           "now() AS created_at")
        assert [f.source for f in load_fidelity(store, "tiny")] == [LABEL.label]  # the report's fidelity view
    result = runner.invoke(app, ["--db", str(db), "generations", "list", "--json"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    sources = {(s["task"], s["source"]): s for s in json.loads(result.stdout.strip().splitlines()[-1])["sources"]}
    assert set(sources) == {("label", LABEL.label), ("profile", LABEL.label)}
    assert sources[("profile", LABEL.label)]["engine_seconds"] == pytest.approx(12.5)
    assert sources[("label", LABEL.label)]["charged_to"] == "profile"
    assert "in profile" in result.stdout and "unknown" not in result.stdout


def test_a_store_from_before_migration_010_reads_as_generated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genre_local.store import connection
    from tests.support_report import add_run, all_metrics

    real = connection.load_migrations()
    monkeypatch.setattr(connection, "load_migrations", lambda: [m for m in real if m.version < 10])
    db = tmp_path / "old.duckdb"
    make_store(db, users=4, news_per_cat=2)
    with open_store(db) as store:
        add_generation(store, "tiny", "profile", "U0", {"topics": ["health"], "regions": []}, run_id="old")
        add_generation(store, "tiny", "profile", "U1", {"topics": ["finance"], "regions": []}, run_id="scored",
                       sampling={"method": "score"})
        for run_id, task in (("old", "profile"), ("scored", "profile"), ("old", "summarize")):
            store.conn.execute(
                "INSERT INTO generation_runs BY NAME SELECT ? AS run_id, 'tiny' AS dataset, ? AS task, 'm' AS model, "
                "'test' AS backend, 1 AS round, now() AS started_at, 1 AS requests, 1 AS new, 0 AS skipped, "
                "1 AS valid, 0 AS invalid", [run_id, task])
        run_id = add_run(store, "tiny", "nrms", "up", 1, all_metrics(0.6))
        store.conn.execute("INSERT INTO run_sources VALUES (?, 'm', 'compact')", [run_id])  # 006's three columns
    monkeypatch.undo()
    with open_store(db) as store:
        assert store.conn.execute("SELECT method FROM run_sources").fetchall() == [("generate",)]
        assert dict(store.conn.execute("SELECT run_id || ':' || task, method FROM generation_runs").fetchall()) == {
            "old:profile": "generate", "scored:profile": "score", "old:summarize": "generate"}
        assert sources_with_tasks(store.conn, "tiny", ["profile"]) == [GEN, SCORE]
        assert read_user_profiles(store.conn, "tiny", GEN)["U0"].topics == ["health"]


def test_the_chain_of_scored_or_labelled_profiles_has_its_own_key() -> None:
    from genre_local.llm.tasks import CHAIN, NEWS, PROFILE, with_profile_method
    from genre_local.pipeline.plan import PlanSettings, sampling_key

    settings = PlanSettings(dataset="tiny", model_id="m")
    assert "profile_method" not in sampling_key(settings, CHAIN)  # generated: the keys stored before
    for method in ("score", "label"):
        chain, news, profile = with_profile_method([CHAIN, NEWS, PROFILE], method)
        assert sampling_key(settings, chain)["profile_method"] == method
        assert "profile_method" not in sampling_key(settings, news) | sampling_key(settings, profile)
        assert (chain.profile_method, news.profile_method, profile.profile_method) == (method, None, method)


def test_samples_are_per_method_and_the_chain_shows_its_own_profiles(db: Path) -> None:
    from genre_local.report.samples import collect_all_samples

    with open_store(db, read_only=True) as store:
        sets = {(s.task, s.source): s for s in collect_all_samples(store, "tiny", limit=3)}
    assert {k for k in sets if k[0] in ("profile", "chain")} == {
        ("profile", GEN.label), ("profile", SCORE.label), ("chain", GEN.label), ("chain", SCORE.label)}
    for task in ("profile", "chain"):  # the chain's samples show the profiles it was made from
        assert {s.topics for s in sets[(task, GEN.label)].samples} == {("health",)}
        assert {s.topics for s in sets[(task, SCORE.label)].samples} == {("finance",)}


def test_the_pipeline_keeps_the_chain_of_each_method_apart(tmp_path: Path) -> None:
    """Through the real pipeline with the fake engine (tests/support_generate.py): the chain of
    labelled profiles is generated beside the chain of generated ones, never skipped as stored."""
    from tests.support_generate import build_store, run_fake, store_rows

    db = build_store(tmp_path / "g.duckdb")
    run_fake(db, tasks=("chain",), batch_size=64)
    [chain], _, _ = run_fake(db, tasks=("chain",), profile_method="label", batch_size=64)
    assert chain.skipped == 0 and chain.new > 0  # nothing of the generated profiles' chain reused
    generated, labelled = GenerationSource("fake-model", "compact"), GenerationSource("fake-model", "compact", "label")
    with open_store(db, read_only=True) as store:
        assert sources_with_tasks(store.conn, "tiny", ["chain"]) == [generated, labelled]
        assert sources_with_tasks(store.conn, "tiny", ["profile", "chain"]) == [generated, labelled]
    assert store_rows(db, "SELECT task, method FROM generation_runs ORDER BY started_at, task") == [
        ("chain", "generate"), ("chain", "label")]


def test_chain_cohorts_follow_the_profile_method(db: Path, tmp_path: Path) -> None:
    """Table 7's Chain cohort is of the chain's own profiles; the one-pass ng (no profile read) and
    original are scored on the cohort of every method, so each chain finds its columns."""
    from genre_local.training import TrainRequest, chain_cohorts
    from recsys.config import TrainConfig

    def groups(variant: str, source: GenerationSource | None) -> list[str]:
        request = TrainRequest(db_path=db, model="din", dataset="tiny", spec=parse_variant(variant),
                               config=TrainConfig(), cache_dir=tmp_path, checkpoint_base=tmp_path, source=source)
        with open_store(db, read_only=True) as store:
            return sorted(chain_cohorts(store.conn, request) or {})

    both = ["chain-cohort:m/compact", "chain-cohort:m/compact+score"]
    assert groups("original", None) == groups("ng", GEN) == both
    assert groups("chain", SCORE) == ["chain-cohort:m/compact+score"]
    assert groups("up", SCORE) == []


def test_every_llm_option_help_names_each_profile_method_suffix() -> None:
    import typer.main

    from genre_local.store.generations import DEFAULT_METHOD, PROFILE_METHODS

    root = typer.main.get_command(app)
    commands = {"train": root.commands["train"], "predict": root.commands["predict"],
                "generations show": root.commands["generations"].commands["show"]}
    for name, command in commands.items():
        (llm,) = [p for p in command.params if "--llm" in p.opts]
        named = set(re.findall(r"\+([a-z-]*[a-z])", llm.help))
        missing = [m for m in PROFILE_METHODS if m != DEFAULT_METHOD and m not in named]
        assert not missing, f"{name} --llm help does not name {missing}"
