"""`--profile-method label-score` (BENCHMARKS.md section 8c): the per-news scorer's output and
parser, the batch prior over a fixed set of news, the profile's soft counts and excess-count
state, and its way through the planner and runner with the deterministic test double (labels and
scores once per news of every user's window, whatever --limit; profiles without the engine; their
fingerprints following the prior)."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest

from genre_local.data.taxonomy import PROFILE_TOPICS
from genre_local.errors import UserError
from genre_local.llm import parsing
from genre_local.llm.backend import GenRequest
from genre_local.llm.news_labels import LabelAggregation, NewsLabel, ScorePrior, score_prior, scored_profile
from genre_local.llm.news_scoring import NewsTopicScoring, calibrate, with_scores
from genre_local.llm.prompt_sets import PAPER
from genre_local.llm.tasks import LABEL, LABEL_SCORES, PROFILE_LABEL_SCORED, label_slots, resolve_tasks
from genre_local.llm.topic_scoring import complete
from genre_local.pipeline.distributed import item_to_row, row_to_item
from genre_local.pipeline.plan import Planner, PlanSettings
from genre_local.store import open_store
from genre_local.store.enrichment import load_enrichment_stats
from genre_local.store.results import load_fidelity, load_source_summaries
from genre_local.store.generations import (GenerationSource, choose_source, profiles_up_to, sources_with_tasks,
                                           split_method)
from tests.support_generate import DATASET, HISTORIES, FakeBackend, build_store, run_fake, store_rows

TOPICS = len(PROFILE_TOPICS)


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return build_store(tmp_path / "g.duckdb")


def _peaked(topic: str, mass: float) -> tuple[float, ...]:
    rest = (1 - mass) / (TOPICS - 1)
    return tuple(mass if t == topic else rest for t in PROFILE_TOPICS)


def test_parse_scored_label_needs_every_topic_as_a_probability():
    scores = {t: 1 / TOPICS for t in PROFILE_TOPICS}
    value = parsing.parse_scored_label(json.dumps({"topic": "weather", "state": "Texas", "topic_scores": scores})).value
    assert value == {"topic": "weather", "state": "Texas", "topic_scores": [1 / TOPICS] * TOPICS}
    assert parsing.parse_scored_label('{"topic": "weather", "state": "none"}').error.startswith("JSON lacks a 'topic_scores'")
    partial = {t: 0.1 for t in PROFILE_TOPICS[:-1]}
    assert not parsing.parse_scored_label(json.dumps({"topic": "weather", "topic_scores": partial})).valid
    assert not parsing.parse_scored_label(json.dumps({"topic": "weather", "topic_scores": {**scores, "health": -1}})).valid
    assert not parsing.parse_scored_label(json.dumps({"topic": "sports", "topic_scores": scores})).valid  # not a topic


def test_with_scores_adds_the_distribution_to_a_decoded_label_only():
    added = json.loads(with_scores('{"topic": "food", "state": "none"}', PROFILE_TOPICS, [1 / TOPICS] * TOPICS))
    assert added["topic"] == "food" and list(added["topic_scores"]) == list(PROFILE_TOPICS)
    assert with_scores("Sorry", PROFILE_TOPICS, [1.0] * TOPICS) == "Sorry"
    assert with_scores("[1, 2]", PROFILE_TOPICS, [1.0] * TOPICS) == "[1, 2]"


def test_the_prior_is_the_sets_mean_and_state_counts_whatever_the_order():
    rng = random.Random(3)
    labels = {}
    for index in range(40):
        raw = [rng.random() for _ in PROFILE_TOPICS]
        labels[f"N{index}"] = NewsLabel(rng.choice(PROFILE_TOPICS), rng.choice(["Texas", "Ohio", None]),
                                        tuple(x / sum(raw) for x in raw))
    prior = score_prior(labels)
    for i, topic in enumerate(PROFILE_TOPICS):
        assert prior.topics[i] == pytest.approx(sum(x.topic_scores[i] for x in labels.values()) / 40)
    named = [x.state for x in labels.values() if x.state]
    assert dict(prior.states) == {s: named.count(s) for s in set(named)} and prior.news == 40
    # The same set listed in any order (another --limit, chunking or resume): the same floats.
    keys = list(labels)
    rng.shuffle(keys)
    shuffled = score_prior({k: labels[k] for k in keys})
    assert shuffled == prior and shuffled.digest() == prior.digest()
    assert score_prior(dict(list(labels.items())[:39])).digest() != prior.digest()  # another set, another prior
    assert ScorePrior.from_json(json.loads(json.dumps(prior.as_json()))) == prior
    with pytest.raises(ValueError, match="no topic scores"):
        score_prior({"N1": NewsLabel("food", None)})


def test_scored_profile_calibrates_by_the_prior_and_weighs_states_by_excess_count():
    # Every news of the set favours finance (the model's bias): calibrated, the user's weather wins.
    biased = {t: 0.3 if t == "finance" else 0.7 / (TOPICS - 1) for t in PROFILE_TOPICS}
    weather = tuple(0.25 if t == "weather" else 0.3 if t == "finance" else 0.45 / (TOPICS - 2) for t in PROFILE_TOPICS)
    prior = ScorePrior(tuple(biased.values()), (("Alabama", 90), ("Ohio", 10)), 100)
    user = [NewsLabel("finance", "Alabama", weather), NewsLabel("finance", "Alabama", weather),
            NewsLabel("weather", "Ohio", weather)]
    profile = scored_profile(user, prior, max_topics=3)
    assert profile.topics[0] == "weather" and max(weather) == weather[PROFILE_TOPICS.index("finance")]  # raw: finance
    # The soft counts of the calibrated distributions, exactly (ties in the taxonomy's order).
    weights = [sum(c) for c in zip(*(calibrate(x.topic_scores, prior.topics) for x in user))]
    assert profile.topics == sorted(PROFILE_TOPICS, key=lambda t: (-weights[PROFILE_TOPICS.index(t)],
                                                                   PROFILE_TOPICS.index(t)))[:3]
    # Alabama: 2 - 3 * 0.9 = -0.7; Ohio: 1 - 3 * 0.1 = 0.7 (by count Alabama would win).
    assert profile.regions == ["Ohio"]
    even = ScorePrior(prior.topics, (("Alabama", 50), ("Ohio", 50)), 100)
    assert scored_profile(user, even).regions == ["Alabama"]
    assert scored_profile([NewsLabel("food", None, weather)], prior).regions == []
    with pytest.raises(ValueError, match="without topic scores"):
        scored_profile([NewsLabel("food", None)], prior)


def test_a_scored_aggregation_keys_its_prior_and_round_trips():
    labels = (NewsLabel("food", None, _peaked("food", 0.3)),)
    prior = ScorePrior(tuple([1 / TOPICS] * TOPICS), (("Texas", 1),), 1)
    spec = LabelAggregation(labels, prior=prior)
    plain = LabelAggregation((NewsLabel("food", None),))
    assert (spec.method, plain.method) == ("label-score", "label") and spec.key()["prior"] == prior.digest()
    assert "prior" not in plain.key() and plain.key()["method"] == "label"
    other = LabelAggregation(labels, prior=ScorePrior(prior.topics, (("Texas", 2),), 2))
    assert other.key()["prior"] != spec.key()["prior"] and other.key()["labels"] == spec.key()["labels"]
    assert LabelAggregation.from_json(spec.as_json()) == spec and LabelAggregation.from_json(plain.as_json()) == plain


def test_news_are_decoded_and_scored_by_first_token_in_two_engine_calls():
    template = LABEL.template()
    titles = ("Hurricane warning issued for Florida Keys", "Fed holds rates steady")
    messages = [tuple(template.render(label_slots(t))) for t in titles]
    requests = [GenRequest(m, 32, schema=LABEL.schema(1), scoring=NewsTopicScoring(m)) for m in messages]
    backend = FakeBackend()
    results = complete(backend, requests)
    assert len(backend.calls) == 1 and [len(c) for c in backend.score_calls] == [2]
    assert all(r.first_token and r.answer_prefix == '{"topic": "' for r in backend.score_calls[0])
    parsed = [parsing.parse_scored_label(r.text).value for r in results]
    assert parsed[0]["topic"] == "weather" and parsed[0]["state"] == "Florida"
    for value, best in zip(parsed, ("weather", "finance")):
        dist = dict(zip(PROFILE_TOPICS, value["topic_scores"]))
        assert math.isclose(sum(dist.values()), 1.0) and max(dist, key=dist.get) == best
    assert all(r.prompt_tokens == 150 and r.completion_tokens == 10 + TOPICS for r in results)  # decode + score
    # A retry's note (runner.repair_request) reaches the decoder, not the scorer.
    retried = replace(requests[0], messages=requests[0].messages[:-1] + ({"role": "user", "content": "fed rates"},))
    complete(backend, [retried])
    assert backend.calls[-1][0].messages == retried.messages and backend.score_calls[-1][0].messages == messages[0]


def test_label_score_resolves_in_the_compact_set_only():
    by_name = {t.name: t for t in resolve_tasks("all", profile_method="label-score")}
    assert by_name["profile"] is PROFILE_LABEL_SCORED and by_name["chain"].requires is PROFILE_LABEL_SCORED
    assert PROFILE_LABEL_SCORED.requires is LABEL_SCORES and LABEL_SCORES.template().version == LABEL.template().version
    assert PROFILE_LABEL_SCORED.reads_prior and not LABEL_SCORES.reads_prior
    with pytest.raises(UserError, match="--profile-method label-score has no prompt in the 'paper' prompt set"):
        PAPER.resolve_tasks("profile", "label-score")


def _profiles(db: Path, run_id: str) -> dict[str, tuple[str, dict]]:
    rows = store_rows(db, "SELECT input_id, fingerprint, parsed FROM generations WHERE task = 'profile' AND run_id = ?",
                      [run_id])
    return {user: (fingerprint, json.loads(parsed)) for user, fingerprint, parsed in rows}


def test_label_score_scores_every_window_and_profiles_alike_whatever_the_limit(db: Path, tmp_path: Path):
    stats, backend, run_id = run_fake(db, tasks=("profile",), profile_method="label-score", batch_size=64, limit=1)
    [profile] = stats
    window_news = sorted({nid for history in HISTORIES.values() for nid in history})
    # --limit 1 profiles one user, but every news of every user's window is labelled and scored.
    assert len(backend.calls) == 1 and len(backend.calls[0]) == len(window_news)
    assert len(backend.score_calls) == 1 and len(backend.score_calls[0]) == len(window_news)
    assert sorted(x for (x,) in store_rows(db, "SELECT input_id FROM generations WHERE task = 'label_scores' AND valid")) \
        == window_news
    assert store_rows(db, "SELECT count(*) FROM generations WHERE task = 'label'") == [(0,)]
    limited = _profiles(db, run_id)
    assert list(limited) == ["U1"] and (profile.new, profile.valid) == (len(window_news) + 1, len(window_news) + 1)
    version, sampling = store_rows(db, "SELECT prompt_version, sampling FROM generations WHERE run_id = ? "
                                       "AND task = 'profile'", [run_id])[0]
    assert version == f"{LABEL.template().version}+label-score" and json.loads(sampling)["method"] == "label-score"
    assert len(limited["U1"][1]["topics"]) == 5 and limited["U1"][1]["regions"] == ["Florida"]
    # All users, in batches of one, in another store: U1's profile is the same row (same key).
    other = build_store(tmp_path / "other.duckdb")
    _, _, all_id = run_fake(other, tasks=("profile",), profile_method="label-score", batch_size=1)
    everyone = _profiles(other, all_id)
    assert everyone["U1"] == limited["U1"] and set(everyone) == {"U1", "U2", "U3", "U4"}
    assert everyone["U2"][1]["topics"][0] == "finance" and everyone["U3"][1]["regions"] == ["Texas"]
    with open_store(other) as store:
        assert profiles_up_to(store.conn, DATASET, 1, method="label-score")["U2"].topics[0] == "finance"
        assert profiles_up_to(store.conn, DATASET, 1, method="label") == {}
        scored_source = GenerationSource("fake-model", "compact", "label-score")
        assert sources_with_tasks(store.conn, DATASET, ["profile"]) == [scored_source]
        # `--llm NAME+label-score` names it beside the generated profiles of the same LLM.
        both = [GenerationSource("fake-model", "compact"), scored_source]
        assert split_method("fake-model/compact+label-score") == ("fake-model/compact", "label-score")
        assert choose_source(both, "fake-model+label-score", "x") == scored_source
        assert choose_source(both, "fake-model/compact", "x") == both[0]
        # generations list, fidelity, Table 1 and cost: the source of its own method, the
        # per-news rows charged to the profile task's run row.
        summaries = {(r.task, r.label) for r in load_source_summaries(store, DATASET)}
        charged = {r.task: r.charged_to for r in load_source_summaries(store, DATASET)}
        assert summaries == {("label_scores", "fake-model/compact+label-score"), ("profile", "fake-model/compact+label-score")}
        assert charged == {"label_scores": "profile", "profile": None}
        assert [f.source for f in load_fidelity(store, DATASET)] == ["fake-model/compact+label-score"]
        [table1] = load_enrichment_stats(store.conn, DATASET)
        assert table1.label == "fake-model/compact+label-score" and table1.profiled_users == 4
    # Resume: nothing new, no model started; `label` does not read the scored labels.
    again, backend2, _ = run_fake(other, tasks=("profile",), profile_method="label-score")
    assert (again[0].new, again[0].skipped, again[0].startup_seconds) == (0, 4, 0.0) and backend2.calls == []
    _, backend3, _ = run_fake(other, tasks=("profile",), profile_method="label", batch_size=64)
    assert len(backend3.calls) == 1 and backend3.score_calls == []


def test_a_changed_score_in_the_set_changes_every_profiles_key(db: Path):
    run_fake(db, tasks=("profile",), profile_method="label-score", batch_size=64)
    with open_store(db) as store:
        before = dict(store.conn.execute("SELECT input_id, fingerprint FROM generations WHERE task = 'profile'").fetchall())
        # N7 is in U4's window only: U1's labels are unchanged, yet the prior they share is not.
        parsed = json.loads(store.conn.execute("SELECT parsed FROM generations WHERE task = 'label_scores' "
                                               "AND input_id = 'N7'").fetchone()[0])
        parsed["topic_scores"] = [1 / TOPICS] * TOPICS
        store.conn.execute("UPDATE generations SET parsed = ? WHERE task = 'label_scores' AND input_id = 'N7'",
                           [json.dumps(parsed)])
    [again], backend, run_id = run_fake(db, tasks=("profile",), profile_method="label-score")
    assert again.new == 4 and again.skipped == 0 and backend.calls == []  # re-profiled, nothing re-scored
    assert all(before[user] != fingerprint for user, (fingerprint, _) in _profiles(db, run_id).items())


def test_no_profile_is_written_while_a_news_of_the_set_has_no_valid_row(db: Path):
    with pytest.raises(UserError, match="have no valid label_scores row after retries, so no profile was written"):
        run_fake(db, tasks=("profile",), profile_method="label-score", batch_size=64, limit=1, retries=0,
                 backend=FakeBackend(bad_first=1))
    assert store_rows(db, "SELECT count(*) FROM generations WHERE task = 'profile'") == [(0,)]
    # The rerun retries the invalid ones, then profiles.
    [profile], _, _ = run_fake(db, tasks=("profile",), profile_method="label-score", batch_size=64, limit=1)
    assert profile.valid == len({n for h in HISTORIES.values() for n in h}) + 1


def test_the_chain_of_label_score_profiles(db: Path):
    [chain], _, _ = run_fake(db, tasks=("chain",), profile_method="label-score", batch_size=64)
    assert chain.new > 0 and chain.invalid == 0
    assert store_rows(db, "SELECT DISTINCT source_method(task, sampling) FROM generations ORDER BY 1") == [("label-score",)]


def test_scored_label_items_round_trip_through_shard_rows(db: Path):
    with open_store(db) as store:
        planner = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="fake-model"))
        items = planner.plan(store.conn, LABEL_SCORES, 1, only_users={"U2"})
    assert [i.input_id for i in items] == ["N3"] and items[0].prompt_version.endswith("+label-score")
    assert row_to_item(json.loads(json.dumps(item_to_row(items[0])))) == items[0]
