"""The labelling profiler (--profile-method label): label parsing and schema, the pure
aggregation of clicked news' labels into a profile, and its way through the planner and runner
with the deterministic test double: labels once per clicked news, profiles without the engine,
its own fingerprints, resume, and the chain reading the profiles of its own method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genre_local.data.taxonomy import PROFILE_TOPICS, US_STATES
from genre_local.errors import UserError
from genre_local.llm import parsing, schemas
from genre_local.llm.backend import GenRequest
from genre_local.llm.news_labels import LabelAggregation, NewsLabel, aggregate_profile, needs_engine
from genre_local.llm.prompt_sets import PAPER, prompt_set_named
from genre_local.llm.tasks import CHAIN, LABEL, PROFILE_LABELED, resolve_tasks, with_profile_method
from genre_local.llm.topic_scoring import complete
from genre_local.pipeline.distributed import item_to_row, row_to_item
from genre_local.pipeline.plan import Planner, PlanSettings
from genre_local.store import open_store
from genre_local.store.generations import profiles_up_to
from tests.support_generate import DATASET, HISTORIES, build_store, run_fake, store_rows as _rows


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return build_store(tmp_path / "g.duckdb")


# -- parsing and schema ----------------------------------------------------------------------


def test_parse_label_canonical_topic_and_state_or_none():
    assert parsing.parse_label('{"topic": "Real Estate", "state": "new york"}').value == {"topic": "real estate", "state": "New York"}
    assert parsing.parse_label('{"topic": "weather", "state": "none"}').value == {"topic": "weather", "state": None}
    # An unknown state reads as no place; an unknown or missing topic fails the label.
    assert parsing.parse_label('{"topic": "weather", "state": "Atlantis"}').value == {"topic": "weather", "state": None}
    assert parsing.parse_label('{"topic": "sports", "state": "Texas"}').error == "no known interest topic (got: sports)"
    assert parsing.parse_label('{"state": "Texas"}').error == "JSON lacks the 'topic' field"
    assert parsing.parse_label("no json").valid is False


def test_label_schema_allows_exactly_the_labels():
    props = schemas.label_schema()["properties"]
    assert props["topic"]["enum"] == list(PROFILE_TOPICS)
    assert props["state"]["enum"] == [*US_STATES, "none"]


# -- aggregation -----------------------------------------------------------------------------


def test_aggregate_ranks_topics_by_count_then_recency_and_caps():
    labels = [NewsLabel("food", None), NewsLabel("weather", "Texas"), NewsLabel("food", "Ohio"),
              NewsLabel("health", "Texas"), NewsLabel("travel", None), NewsLabel("weather", None)]
    profile = aggregate_profile(labels, max_topics=3, max_regions=1)
    # food and weather twice (weather clicked last), then health vs travel: travel is more recent.
    assert profile.topics == ["weather", "food", "travel"]
    assert profile.regions == ["Texas"]
    assert aggregate_profile(labels, max_topics=5, max_regions=2) == (["weather", "food", "travel", "health"], ["Texas", "Ohio"])


def test_aggregate_without_any_state_names_no_region():
    assert aggregate_profile([NewsLabel("economy", None)]) == (["economy"], [])
    assert aggregate_profile([]) == ([], [])


def test_aggregation_spec_key_follows_its_labels_and_round_trips():
    spec = LabelAggregation((NewsLabel("food", None), NewsLabel("weather", "Texas")))
    other = LabelAggregation((NewsLabel("food", None), NewsLabel("weather", "Ohio")))
    assert spec.key() != other.key() and spec.key()["method"] == "label"
    assert LabelAggregation.from_json(spec.as_json()) == spec
    request = GenRequest(spec.messages(), 64, scoring=spec)
    assert needs_engine(request) is False and needs_engine(GenRequest(spec.messages(), 64)) is True
    # Answered without any engine (backend None), in the profiler's JSON.
    [result] = complete(None, [request])
    assert json.loads(result.text) == {"topics": ["weather", "food"], "regions": ["Texas"]}
    assert (result.prompt_tokens, result.completion_tokens) == (0, 0)


# -- methods and prompt sets -----------------------------------------------------------------


def test_label_method_swaps_the_profiler_and_the_chains_requirement_in_compact_only():
    tasks = resolve_tasks("all", profile_method="label")
    by_name = {t.name: t for t in tasks}
    assert by_name["profile"] is PROFILE_LABELED and by_name["chain"].requires is PROFILE_LABELED
    assert PROFILE_LABELED.requires is LABEL and "label" not in by_name  # a helper, never named by --task
    with pytest.raises(UserError, match="--profile-method label has no prompt in the 'paper' prompt set"):
        PAPER.resolve_tasks("profile", "label")
    assert prompt_set_named("compact").task("label") is LABEL


# -- through the pipeline, with the deterministic double -------------------------------------


def test_labels_once_per_clicked_news_profiles_aggregated_without_the_engine(db: Path):
    stats, backend, run_id = run_fake(db, tasks=("profile",), profile_method="label", batch_size=64)
    [profile] = stats
    clicked = sorted({nid for history in HISTORIES.values() for nid in history})
    # One engine call, one request per clicked news (U4 shares all of them with the others).
    assert len(backend.calls) == 1 and len(backend.calls[0]) == len(clicked)
    labels = dict(_rows(db, "SELECT input_id, parsed FROM generations WHERE task = 'label' AND valid"))
    assert sorted(labels) == clicked
    assert json.loads(labels["N2"]) == {"topic": "weather", "state": "Florida"}
    # Four users with history, their profiles aggregated from the labels, charged to the profile row.
    assert (profile.new, profile.valid) == (len(clicked) + 4, len(clicked) + 4)
    rows = _rows(db, "SELECT input_id, prompt_version, sampling, parsed, prompt FROM generations "
                     "WHERE task = 'profile' AND run_id = ? ORDER BY input_id", [run_id])
    label_version = LABEL.template().version
    assert all(version == f"{label_version}+label" for _, version, _, _, _ in rows)
    assert all(json.loads(sampling)["method"] == "label" for _, _, sampling, _, _ in rows)
    parsed = {user: json.loads(p) for user, _, _, p, _ in rows}
    # U1 clicked the Dolphins (no topic cue: "international news", Florida), then a hurricane in Florida.
    assert parsed["U1"] == {"topics": ["weather", "international news"], "regions": ["Florida"]}
    assert parsed["U4"]["topics"][0] == "international news" and parsed["U4"]["regions"] == ["Florida"]
    assert json.loads(rows[0][4]) == [{"role": "labels", "content": '[["international news", "Florida"], ["weather", "Florida"]]'}]
    assert profile.fidelity is not None and profile.fidelity.users == 4
    # Resume: nothing new, and no model is even started.
    again, backend2, _ = run_fake(db, tasks=("profile",), profile_method="label")
    assert (again[0].new, again[0].skipped, again[0].startup_seconds) == (0, 4, 0.0) and backend2.calls == []


def test_a_changed_label_remakes_the_profiles_that_read_it(db: Path):
    run_fake(db, tasks=("profile",), profile_method="label", batch_size=64)
    with open_store(db) as store, store.transaction() as conn:
        conn.execute("""UPDATE generations SET parsed = '{"topic": "finance", "state": null}', created_at = now()
                        WHERE task = 'label' AND input_id = 'N2'""")
    stats, backend, _ = run_fake(db, tasks=("profile",), profile_method="label")
    # U1 and U4 read N2: remade (no engine call); U2 and U3 did not: skipped.
    assert (stats[0].new, stats[0].skipped) == (2, 2) and backend.calls == []


def test_the_chain_reads_the_profiles_of_its_own_method(db: Path):
    run_fake(db, tasks=("profile",), profile_method="label", batch_size=64)
    run_fake(db, tasks=("profile",))  # generated profiles, newer than the labelled ones
    with open_store(db) as store:
        assert profiles_up_to(store.conn, DATASET, 1, method="label")["U1"].topics == ["weather", "international news"]
        assert profiles_up_to(store.conn, DATASET, 1, method="generate")["U1"].topics == ["health", "weather", "finance"]
        planner = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="fake-model"))
        [labelled_chain] = with_profile_method([CHAIN], "label")
        for chain, interests in ((labelled_chain, "weather, international news"), (CHAIN, "health, weather, finance")):
            items = {i.input_id: i for i in planner.plan(store.conn, chain, 1)}
            assert interests in items["U1"].request.messages[-1]["content"]


def test_chain_of_the_labelling_profiler_makes_labels_then_profiles_first(db: Path):
    stats, backend, _ = run_fake(db, tasks=("chain",), profile_method="label", batch_size=64)
    [chain] = stats
    # Labels of the cold users' clicked news (U1-U3: N1-N6), their profiles, then the chain.
    assert [len(call) for call in backend.calls] == [6, 3]
    assert chain.valid == 6 + 3 + 3
    assert _rows(db, "SELECT count(*) FROM generations WHERE task = 'profile' AND sampling ->> 'method' = 'label'") == [(3,)]


def test_label_items_round_trip_through_shard_rows(db: Path):
    with open_store(db) as store:
        planner = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="fake-model"))
        items = planner.plan(store.conn, LABEL, 1, only_users={"U2", "U3"})
    assert [i.input_id for i in items] == ["N3", "N4", "N6", "N5"]
    for item in items:
        assert row_to_item(json.loads(json.dumps(item_to_row(item)))) == item
