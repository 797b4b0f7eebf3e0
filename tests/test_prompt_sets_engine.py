"""The paper prompt set on the real vLLM engine and the embedded model (issue 9 §4): every task
once with --limit 2, stored under source `<llm>/paper`, beside a compact source of the same LLM.
The command runs in the suite's engine host (tests/support_engine_host.py): the vLLM engine the
other vLLM tests start serves it too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genre_local.store import open_store
from genre_local.store.generations import sources_with_tasks
from tests.support_generate import DATASET, build_store, run_fake
from tests.support_llm import link_prepared_model

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def test_paper_set_on_the_real_engine_is_its_own_source(tmp_path: Path, engine_host):
    db = build_store(tmp_path / "paper.duckdb")
    link_prepared_model(tmp_path / "models")  # `models prepare` itself: tests/test_quiet.py
    done = engine_host.run("--db", str(db), "generate", "--dataset", DATASET, "--backend", "vllm", "--limit", "2",
                           "--per-user", "2", "--task", "all", "--prompts", "paper", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    llm = payload["model"]
    assert payload["prompt_set"] == "paper" and payload["source"] == f"{llm}/paper"
    requested = {t["task"]: t["requested"] for t in payload["tasks"]}
    assert requested == {"summarize": 2, "profile": 2, "news": 4, "chain": 4}  # one news per request
    with open_store(db, read_only=True) as store:
        rows = store.conn.execute(
            "SELECT task, input_id, prompt_set, prompt_version, sampling, valid, raw_output, completion_tokens "
            "FROM generations ORDER BY task, input_id, sampling").fetchall()
        assert {r[2] for r in rows} == {"paper"} and all(r[3].startswith("paper:") and r[7] > 0 for r in rows)
        news = [r for r in rows if r[0] == "news"]
        assert [(r[1], json.loads(r[4])["news_index"]) for r in news] == [("U1", 0), ("U1", 1), ("U2", 0), ("U2", 1)]
        for r in news:
            if r[5]:  # constrained to the one-item schema
                assert len(json.loads(r[6])["items"]) == 1, r[6]
        assert all(r[5] for r in rows if r[0] == "summarize"), [r[6] for r in rows if r[0] == "summarize"]
        stored = store.conn.execute("SELECT count(*) FROM synthetic_news WHERE prompt_set = 'paper' "
                                    "AND source_task = 'news'").fetchone()[0]
        assert stored == sum(1 for r in news if r[5])
    # The same LLM with the compact set (a fake engine stands in) is a second source.
    run_fake(db, tasks=("summarize",), model_id=llm, limit=2)
    with open_store(db, read_only=True) as store:
        labels = [s.label for s in sources_with_tasks(store.conn, DATASET, ["summarize"])]
    assert labels == [f"{llm}/compact", f"{llm}/paper"]
