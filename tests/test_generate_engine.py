"""The real engines on the embedded model: all four tasks, every row valid.

Slow by nature (vLLM start), so the data is tiny: --limit 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from genre_local.store import open_store
from tests.support_generate import DATASET, build_store
from tests.support_llm import link_prepared_model

pytestmark = [pytest.mark.engine, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    # A real process: vLLM spawns workers that re-import the entry point.
    return subprocess.run([sys.executable, "-m", "genre_local", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """One prepared model folder (models/ beside the stores) shared by both backends' runs
    (`models prepare` itself: tests/test_quiet.py)."""
    root = tmp_path_factory.mktemp("engine")
    link_prepared_model(root / "models")
    return root


@pytest.mark.parametrize("backend", ["vllm", "transformers"])
def test_all_four_tasks_every_row_valid(workspace: Path, backend: str, engine_host):
    # vLLM: in the suite's engine host (tests/support_engine_host.py), one engine start for every
    # vLLM test; transformers: its own `python -m genre_local` process (the host starts lazily).
    run = engine_host.run if backend == "vllm" else _cli
    db = build_store(workspace / f"{backend}.duckdb")
    done = run("--db", str(db), "generate", "--dataset", DATASET, "--task", "all", "--backend", backend, "--limit", "2", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    assert payload["backend"] == backend and payload["task"] == "all"
    assert payload["requested"] == 8 and payload["new"] == 8 and payload["invalid"] == 0, payload
    with open_store(db) as store:
        rows = store.conn.execute("SELECT task, input_id, raw_output, parsed, valid, completion_tokens FROM generations").fetchall()
        assert sorted((r[0], r[1]) for r in rows) == [
            ("chain", "U1"), ("chain", "U2"), ("news", "U1"), ("news", "U2"),
            ("profile", "U1"), ("profile", "U2"), ("summarize", "N1"), ("summarize", "N2"),
        ]
        for task, input_id, raw, parsed, valid, completion_tokens in rows:
            assert valid and completion_tokens > 0, (task, input_id, raw)
            # Constrained decoding: the raw text is the JSON object and nothing else (unconstrained,
            # this model answers in prose).
            assert set(json.loads(raw)) == set(json.loads(parsed)), raw
        assert store.conn.execute("SELECT count(*) FROM enhanced_titles").fetchone()[0] == 2
        assert store.conn.execute("SELECT count(*) FROM user_profiles").fetchone()[0] == 2
        assert store.conn.execute("SELECT count(*) FROM synthetic_news WHERE nid LIKE 'G%'").fetchone()[0] == 8
        runs = store.conn.execute("SELECT task, backend, engine_seconds > 0, completion_tokens > 0, dtype "
                                  "FROM generation_runs ORDER BY task").fetchall()
        # dtype "auto" on CPU: vLLM takes bfloat16 where the CPU multiplies it natively; each run
        # row records what the engine resolved (issue 9).
        from recsys.cpu import cpu_has_native_bf16

        dtype = "bfloat16" if backend == "vllm" and cpu_has_native_bf16() else "float32"
        assert runs == [(t, backend, True, True, dtype) for t in ("chain", "news", "profile", "summarize")]
    again = run("--db", str(db), "generate", "--dataset", DATASET, "--task", "all", "--backend", backend, "--limit", "2", "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    rerun = json.loads(again.stdout.strip().splitlines()[-1])
    assert rerun["new"] == 0 and rerun["skipped"] == 8 and "no model loaded" in again.stdout
