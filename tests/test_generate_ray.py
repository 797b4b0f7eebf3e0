"""`generate --engine ray` on a local Ray with 2 CPU actors: kill -9 the driver mid-run, rerun,
every key stored exactly once; greedy outputs equal to the single-process path (a fake engine
for the kill, the embedded model on the transformers backend for real outputs). The GPU branch
(ray.data.llm's vLLM processor) cannot run here: only its pure parts are tested."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genre_local.errors import UserError
from genre_local.llm.tasks import TASKS
from genre_local.pipeline.distributed import item_to_row
from genre_local.pipeline.plan import PlanSettings, Planner
from genre_local.pipeline.ray_engine import RayCluster, start_ray, uses_vllm_processor, vllm_sampling
from genre_local.store import open_store
from tests.support_generate import DATASET, FakeBackend, build_store, run_fake
from tests.support_llm import prepared_model
from tests.support_scale import (
    key_counts,
    outputs,
    ray_run,
    real_settings,
    transformers_factory,
)

ROOT = Path(__file__).resolve().parent.parent
RUN_TASKS = ("summarize", "profile")

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def ray_is_shut_down():
    yield
    import ray

    running = ray.is_initialized()
    if running:
        ray.shutdown()
    assert not running, "a Ray test left Ray running"


def _descendants(pid: int) -> set[int]:
    """Every process below pid (Ray's GCS, raylet and workers under a local driver)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def test_kill_minus_9_the_driver_then_rerun_stores_every_key_once(tmp_path: Path):
    reference = build_store(tmp_path / "one.duckdb")
    run_fake(reference, tasks=RUN_TASKS)
    db = build_store(tmp_path / "ray.duckdb")
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.support_scale", str(db), str(run_dir), "0.5", ",".join(RUN_TASKS)]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env)
    merged, family = 0, set()
    deadline = time.monotonic() + 120
    while merged < 3 and time.monotonic() < deadline:
        line = driver.stdout.readline()
        if not line:
            break
        merged += line.startswith("merged")
    family = _descendants(driver.pid)
    driver.send_signal(signal.SIGKILL)  # mid-run: actors are busy on further batches
    driver.wait()
    assert merged == 3, "the driver never got going"
    # The local Ray it started goes with it (fate sharing); whatever does not is ours to stop.
    limit = time.monotonic() + 30
    while _alive(family) and time.monotonic() < limit:
        time.sleep(0.5)
    for pid in _alive(family):
        os.kill(pid, signal.SIGKILL)
    assert 3 <= key_counts(db)[0] < 11
    stats, _ = ray_run(db, run_dir, FakeBackend, tasks=RUN_TASKS)
    assert sum(s.skipped for s in stats) >= 3 and sum(s.new + s.skipped for s in stats) == 11
    assert key_counts(db) == key_counts(reference) == (11, 11)
    assert outputs(db) == outputs(reference)
    assert not list((run_dir / "pending").glob("*.parquet"))


def test_embedded_model_on_two_actors_equals_the_single_process_path(tmp_path: Path, embedded_reference: Path):
    model = prepared_model()
    settings = real_settings(limit=2)
    reference = embedded_reference  # the single-process run (tests/conftest.py), shared with test_generate_workers
    db = build_store(tmp_path / "ray.duckdb")
    stats, _ = ray_run(db, tmp_path / "run", transformers_factory(model), tasks=("summarize",), settings=settings)
    assert stats[0].new == 2 and stats[0].valid == 2 and stats[0].completion_tokens > 0
    assert key_counts(db) == key_counts(reference) == (2, 2)
    assert outputs(db) == outputs(reference)


def test_an_unreachable_cluster_is_a_one_line_user_error():
    import ray

    with pytest.raises(UserError, match=r"^--ray-address 127\.0\.0\.1:1: nothing answers there \(.*\); start the head node"):
        start_ray(RayCluster(address="127.0.0.1:1"))
    assert not ray.is_initialized()


def test_vllm_sampling_carries_the_plan_and_the_schema(tmp_path: Path):
    db = build_store(tmp_path / "g.duckdb")
    with open_store(db) as store:
        item = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="m", temperature=0.3, seed=5)).plan(store.conn, TASKS["profile"], 1)[0]
    params = vllm_sampling(json.loads(json.dumps(item_to_row(item))))
    assert params == {
        "temperature": 0.3, "top_p": 1.0, "seed": 5, "max_tokens": item.request.max_tokens,
        "repetition_penalty": item.request.repetition_penalty, "structured_outputs": {"json": item_to_row(item)["schema"]},
    }
    assert json.loads(params["structured_outputs"]["json"]) == item.request.schema
    assert uses_vllm_processor({"CPU": 16, "GPU": 2}, "vllm", 2)
    assert not uses_vllm_processor({"CPU": 16, "GPU": 1}, "vllm", 2)  # too few GPUs for one replica
    assert not uses_vllm_processor({"CPU": 16, "GPU": 8}, "transformers", 1)
    assert not uses_vllm_processor({"CPU": 16}, "vllm", 1)
