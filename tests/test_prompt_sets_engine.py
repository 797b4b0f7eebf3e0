"""The paper prompt set on the real vLLM engine and the embedded model (issue 9 §4): a few
outputs, stored under source `<llm>/paper` beside the compact set's. Tiny: --limit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from genre_local.store import open_store
from genre_local.store.generations import sources_with_tasks
from tests.support_generate import DATASET, build_store

pytestmark = [pytest.mark.engine, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    # A real process: vLLM spawns workers that re-import the entry point.
    return subprocess.run([sys.executable, "-m", "genre_local", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_paper_set_on_the_real_engine_is_its_own_source(tmp_path: Path):
    db = build_store(tmp_path / "paper.duckdb")
    base = ["--db", str(db), "generate", "--dataset", DATASET, "--backend", "vllm", "--limit", "2", "--per-user", "2", "--json"]
    done = _cli(*base, "--task", "news", "--prompts", "paper")
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    assert payload["prompt_set"] == "paper" and payload["source"].endswith("/paper")
    assert payload["requested"] == 4 and payload["new"] == 4  # 2 cold users x 2 news, one news per request
    llm = payload["model"]
    done = _cli(*base, "--task", "summarize", "--prompts", "compact")
    assert done.returncode == 0, done.stderr[-3000:]
    done = _cli(*base, "--task", "summarize", "--prompts", "paper")
    assert done.returncode == 0, done.stderr[-3000:]
    with open_store(db, read_only=True) as store:
        rows = store.conn.execute(
            "SELECT task, input_id, prompt_set, prompt_version, sampling, valid, raw_output, completion_tokens "
            "FROM generations ORDER BY task, prompt_set, input_id, sampling").fetchall()
        news = [r for r in rows if r[0] == "news"]
        assert [(r[1], json.loads(r[4])["news_index"]) for r in news] == [("U1", 0), ("U1", 1), ("U2", 0), ("U2", 1)]
        assert all(r[2] == "paper" and r[3].startswith("paper:") and r[7] > 0 for r in news)
        for r in news:
            if r[5]:  # one news per request, constrained to the one-item schema
                assert len(json.loads(r[6])["items"]) == 1, r[6]
        summaries = {(r[1], r[2]): r for r in rows if r[0] == "summarize"}
        assert set(summaries) == {("N1", "compact"), ("N2", "compact"), ("N1", "paper"), ("N2", "paper")}
        assert all(r[5] for r in summaries.values()), [r[6] for r in summaries.values()]  # greedy, constrained
        labels = [s.label for s in sources_with_tasks(store.conn, DATASET, ["summarize"])]
        assert labels == [f"{llm}/compact", f"{llm}/paper"]
        stored = store.conn.execute("SELECT count(*) FROM synthetic_news WHERE prompt_set = 'paper'").fetchone()[0]
        assert stored == sum(1 for r in news if r[5])
