"""The scored and the labelling profilers on the real vLLM engine and the embedded model: a small
synthetic dataset, every profile valid, fidelity reported with its chance level (printed, not
asserted: on 2 CPU cores a scored user costs ~59 next-token queries, so too few users are
affordable here for beating chance to be more than luck; BENCHMARKS.md section 8).

Engine test (run under the shared lock): both generate commands run in the suite's engine host
(tests/support_engine_host.py), so one vLLM start serves both (and the other vLLM tests); the
embedded model is prepared once for the suite. With a start per command it took 202 s on 2
shared cores for both methods (printed for 3 users: scored precision@3 0.0, labelled 0.11,
chance ~0.1; the 250-user numbers are in section 8b). The third command runs `label-score` on a
second, tiny dataset (its prior's set is every news in every user's window, whatever --limit, so
the 200-user set would cost minutes): its labels are decoded by the very request `label` decodes,
plus one first-token scoring query per news (section 8c). All three: 109-116 s with one engine
start on 2 shared cores (load 4-7), the first two alone 115 s in the same half hour: the third's
55 news (about 14 s at section 8c's 0.25 s a news) are within the load's noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.data.taxonomy import PROFILE_TOPICS
from genre_local.store import open_store
from genre_local.store.datasets import read_histories
from tests.support_llm import link_prepared_model

pytestmark = [pytest.mark.engine, pytest.mark.slow]
USERS = 3  # profiled users: a validity check (each costs ~59 queries); fidelity is printed


def test_scored_profiles_are_valid_and_report_their_chance_level(tmp_path: Path, engine_host):
    db = tmp_path / "scored.duckdb"
    for args in (("data", "synth", str(tmp_path / "synth"), "--news", "400", "--users", "200", "--seed", "7"),
                 ("--db", str(db), "data", "import", str(tmp_path / "synth"), "--name", "synth"),
                 ("data", "synth", str(tmp_path / "tiny"), "--news", "150", "--users", "10", "--seed", "7"),
                 ("--db", str(db), "data", "import", str(tmp_path / "tiny"), "--name", "tiny")):
        made = CliRunner().invoke(app, list(args))  # in process: only the engine needs its own
        assert made.exit_code == 0, made.output[-2000:]
    link_prepared_model(tmp_path / "models")  # `models prepare` itself: tests/test_quiet.py
    done = engine_host.run("--db", str(db), "generate", "--dataset", "synth", "--task", "profile", "--profile-method", "score",
                           "--backend", "vllm", "--limit", str(USERS), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    assert payload["new"] == USERS and payload["invalid"] == 0, payload
    fidelity = payload["tasks"][0]["fidelity"]
    print("scored profiler on", USERS, "synthetic users:", json.dumps(fidelity))
    assert "chance" in done.stdout  # the text output shows the chance level too
    with open_store(db) as store:
        rows = store.conn.execute("SELECT parsed, prompt_version FROM generations WHERE task = 'profile'").fetchall()
    for parsed, version in rows:
        profile = json.loads(parsed)
        assert len(profile["topics"]) == 3 and len(set(profile["topics"])) == 3 and len(profile["regions"]) == 1
        assert version.endswith("+score")
    assert set(fidelity["chance"]) == {"precision_at_3", "recall", "region_accuracy"} and fidelity["users"] == USERS
    # The labelling profiler on the same users: their clicked news labelled by decoding, then
    # profiles aggregated; none of the scored profiles stands in for them.
    done = engine_host.run("--db", str(db), "generate", "--dataset", "synth", "--task", "profile", "--profile-method", "label",
                           "--backend", "vllm", "--limit", str(USERS), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    labelled = json.loads(done.stdout.strip().splitlines()[-1])
    print("labelling profiler on", USERS, "synthetic users:", json.dumps(labelled["tasks"][0]["fidelity"]))
    with open_store(db) as store:
        labels = store.conn.execute("SELECT count(*), count(*) FILTER (WHERE valid) FROM generations WHERE task = 'label'").fetchone()
        rows = store.conn.execute("SELECT parsed, prompt_version FROM generations WHERE task = 'profile' "
                                  "AND prompt_version LIKE '%+label'").fetchall()
    assert labels[0] > USERS and labelled["new"] == labels[0] + USERS and labelled["invalid"] == 0, (labels, labelled)
    assert len(rows) == USERS
    for parsed, _ in rows:
        profile = json.loads(parsed)
        assert 1 <= len(profile["topics"]) <= 5 and len(set(profile["topics"])) == len(profile["topics"])
        assert len(profile["regions"]) <= 1
    # The label-score profiler on the tiny dataset, one user asked: every news of every user's
    # window decoded and scored (the prior's set), then that user's profile.
    done = engine_host.run("--db", str(db), "generate", "--dataset", "tiny", "--task", "profile", "--profile-method",
                           "label-score", "--backend", "vllm", "--limit", "1", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    scored_run = json.loads(done.stdout.strip().splitlines()[-1])
    print("label-score profiler on 1 of the tiny dataset's users:", json.dumps(scored_run["tasks"][0]["fidelity"]))
    with open_store(db) as store:
        scored = [json.loads(p) for (p,) in store.conn.execute(
            "SELECT parsed FROM generations WHERE dataset = 'tiny' AND task = 'label_scores' AND valid").fetchall()]
        windows = len({nid for user in read_histories(store.conn, "tiny") for nid in user.history[-20:]})
        rows = store.conn.execute("SELECT parsed, prompt_version FROM generations WHERE dataset = 'tiny' "
                                  "AND task = 'profile'").fetchall()
    assert scored_run["invalid"] == 0 and scored_run["new"] == len(scored) + 1 and scored_run["tasks"][0]["source"].endswith("+label-score")
    assert len(scored) == windows > 1, (len(scored), windows)
    for label in scored:
        assert label["topic"] in PROFILE_TOPICS and len(label["topic_scores"]) == len(PROFILE_TOPICS)
        assert abs(sum(label["topic_scores"]) - 1.0) < 1e-6 and min(label["topic_scores"]) > 0
        # The 19 first tokens are distinct: the scores are not all alike.
        assert len(set(label["topic_scores"])) > 1
    [(parsed, version)] = rows
    profile = json.loads(parsed)
    assert version.endswith("+label-score") and len(profile["topics"]) == 5 and len(set(profile["topics"])) == 5
    assert len(profile["regions"]) <= 1
