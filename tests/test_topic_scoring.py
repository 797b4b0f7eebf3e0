"""The scored profiler: the pure combiner (log-probs -> ranked topics and regions, calibration),
the backend's scoring helpers, the score call on the test double, and its way through the
planner, runner, resume and shard rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genre_local.llm.backend import GenRequest, GenResult, ScoreRequest, candidate_logprobs, continuation_branches
from genre_local.llm.tasks import PROFILE, PROFILE_SCORED, TASKS, resolve_tasks, with_profile_method
from genre_local.llm.topic_scoring import (
    ProfileScoring, calibrated, choose_profile, complete, score_profiles, top_labels,
)
from genre_local.pipeline.distributed import item_to_row, row_to_item
from genre_local.pipeline.plan import Planner, PlanSettings
from genre_local.store import open_store
from tests.support_generate import DATASET, FakeBackend, build_store, run_fake

SYSTEM = {"role": "system", "content": "topics: health, weather, finance, food"}
EMPTY = (SYSTEM, {"role": "user", "content": "Headlines read:\n"})


def _messages(*titles: str) -> tuple[dict[str, str], ...]:
    return (SYSTEM, {"role": "user", "content": "Headlines read:\n" + "\n".join(f"- {t}" for t in titles)})


def _rows(db: Path, sql: str, params=()):
    with open_store(db) as store:
        return store.conn.execute(sql, list(params)).fetchall()


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return build_store(tmp_path / "g.duckdb")


# -- pure combiner ---------------------------------------------------------------------------


def test_calibration_subtracts_the_content_free_score():
    assert calibrated([-1.0, -2.0], [-3.0, -0.5]) == [2.0, -1.5]
    assert calibrated([-1.0, -2.0], None) == [-1.0, -2.0]
    with pytest.raises(ValueError, match="2 scores but 1"):
        calibrated([-1.0, -2.0], [-3.0])


def test_top_labels_best_first_ties_in_label_order():
    assert top_labels(["a", "b", "c", "d"], [0.0, 2.0, 0.0, 1.0], 3) == ["b", "d", "a"]
    assert top_labels(["a", "b"], [0.0, 0.0], 5) == ["a", "b"]
    assert top_labels(["a", "b"], [0.0, 1.0], 0) == []
    with pytest.raises(ValueError):
        top_labels(["a"], [0.0, 1.0], 1)


def test_calibration_turns_a_prior_favourite_into_the_history_driven_label():
    spec = ProfileScoring(EMPTY, topics=("news", "weather", "food"), regions=("Ohio", "Texas"), top_topics=2)
    # The model always likes "news" (-1) and "Ohio"; the history only raises weather and Texas.
    with_history = ([-1.0, -2.0, -6.0], [-1.0, -2.0])
    no_history = ([-1.2, -5.0, -6.0], [-0.8, -4.0])
    raw = choose_profile(ProfileScoring(EMPTY, topics=spec.topics, regions=spec.regions, top_topics=2, calibrate=False),
                         *with_history, *no_history)
    assert (raw.topics, raw.regions) == (["news", "weather"], ["Ohio"])
    fixed = choose_profile(spec, *with_history, *no_history)
    assert (fixed.topics, fixed.regions) == (["weather", "news"], ["Texas"])
    assert fixed.topic_scores == pytest.approx({"news": 0.2, "weather": 3.0, "food": 0.0})


# -- backend helpers -------------------------------------------------------------------------


def test_continuation_branches_and_candidate_sums():
    # "New York" and "New Jersey" share their first token; "Ohio" stands alone.
    candidates = [[7, 1], [7, 2], [9]]
    branches = continuation_branches(candidates)
    assert branches == {(): (7, 9), (7,): (1, 2)}
    answers = {(): {7: -1.0, 9: -3.0}, (7,): {1: -0.5, 2: -2.0}}
    assert candidate_logprobs(candidates, answers) == (-1.5, -3.0, -3.0)
    with pytest.raises(ValueError, match="no tokens"):
        continuation_branches([[1], []])


def test_score_call_on_the_test_double_and_the_profile_it_gives():
    backend = FakeBackend()
    spec = ProfileScoring(EMPTY)
    request = GenRequest(_messages("Hurricane warning for Miami", "Fed holds rates"), 64, scoring=spec)
    [result] = score_profiles(backend, [request])
    assert result.finish_reason == "scored"
    # finance: two cues (fed, rates), weather one; health is first of the rest in label order.
    assert json.loads(result.text) == {"topics": ["finance", "weather", "health"], "regions": ["Florida"]}
    [call] = backend.score_calls
    # The user's two score requests, then the content-free pair (charged to this request).
    assert [(r.answer_prefix, r.messages == EMPTY) for r in call] == [
        ('{"topics": ["', False), ('{"regions": ["', False), ('{"topics": ["', True), ('{"regions": ["', True)]
    assert result.prompt_tokens == 4 * 50 and result.completion_tokens == 2 * (19 + 50)


def test_complete_routes_scored_requests_and_keeps_request_order():
    backend = FakeBackend()
    spec = ProfileScoring(EMPTY)
    plain = GenRequest(({"role": "user", "content": "x"},), 8, schema={"properties": {"title": {}}})
    scored = [GenRequest(_messages("Ten soups from Austin"), 64, scoring=spec),
              GenRequest(_messages("New flu vaccine"), 64, scoring=spec)]
    results = complete(backend, [scored[0], plain, scored[1]])
    assert [r.finish_reason for r in results] == ["scored", "stop", "scored"]
    assert json.loads(results[0].text)["regions"] == ["Texas"] and json.loads(results[2].text)["topics"][0] == "health"
    # One content-free pair for the whole batch, charged once.
    assert len(backend.score_calls) == 1 and len(backend.score_calls[0]) == 2 * 2 + 2
    assert results[0].prompt_tokens == 200 and results[2].prompt_tokens == 100
    assert complete(backend, [plain]) == [GenResult(results[1].text, 100, 10, "stop")]


# -- through the pipeline --------------------------------------------------------------------


def test_profile_method_swaps_the_profiler_and_the_chains_requirement():
    tasks = resolve_tasks("all", profile_method="score")
    by_name = {t.name: t for t in tasks}
    assert by_name["profile"] is PROFILE_SCORED and by_name["chain"].requires is PROFILE_SCORED
    assert resolve_tasks("profile") == [PROFILE] and with_profile_method([TASKS["news"]], "score") == [TASKS["news"]]
    from genre_local.errors import UserError

    with pytest.raises(UserError, match="--profile-method 'guess'"):
        resolve_tasks("profile", profile_method="guess")
    with pytest.raises(ValueError, match="need scoring_for"):
        from dataclasses import replace

        replace(PROFILE, method="score")


def test_scored_profiles_are_stored_once_apart_from_generated_ones(db: Path):
    generated, _, _ = run_fake(db, tasks=("profile",))
    stats, backend, run_id = run_fake(db, tasks=("profile",), profile_method="score", batch_size=2)
    [profile] = stats
    # Nothing of the generated run stands in for a scored profile: all four are new, scored.
    assert (profile.new, profile.skipped, profile.valid) == (4, 0, 4)
    assert backend.calls == [] and len(backend.score_calls) == 2  # two batches of two users
    rows = _rows(db, "SELECT input_id, prompt_version, sampling, parsed FROM generations WHERE run_id = ? ORDER BY input_id", [run_id])
    assert all(version.endswith("+score") for _, version, _, _ in rows)
    assert all(json.loads(sampling)["method"] == "score" for _, _, sampling, _ in rows)
    parsed = {user: json.loads(p) for user, _, _, p in rows}
    # U1 read of a hurricane and the Dolphins: weather, then ties in label order; Florida.
    assert parsed["U1"] == {"topics": ["weather", "health", "education"], "regions": ["Florida"]}
    assert parsed["U3"]["topics"][:2] == ["health", "food"] and parsed["U3"]["regions"] == ["Texas"]
    # Fidelity with its chance level, for the scored run.
    assert profile.fidelity is not None and profile.fidelity.precision_at_3 > profile.fidelity.chance.precision_at_3
    # Resume: a rerun finds every scored profile stored and asks the engine nothing.
    again, backend2, _ = run_fake(db, tasks=("profile",), profile_method="score")
    assert (again[0].new, again[0].skipped) == (0, 4) and backend2.score_calls == []
    assert _rows(db, "SELECT count(*) FROM generations WHERE task = 'profile'") == [(8,)]
    assert generated[0].new == 4


def test_scored_items_round_trip_through_shard_rows(db: Path):
    with open_store(db) as store:
        items = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="fake-model")).plan(store.conn, PROFILE_SCORED, 1)
    assert items and all(i.request.scoring is not None for i in items)
    for item in items:
        row = json.loads(json.dumps(item_to_row(item)))
        assert row_to_item(row) == item
    with open_store(db) as store:
        plain = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="fake-model")).plan(store.conn, PROFILE, 1)
    assert item_to_row(plain[0])["scoring"] == "" and row_to_item(item_to_row(plain[0])).task is PROFILE
    assert plain[0].fingerprint != items[0].fingerprint
