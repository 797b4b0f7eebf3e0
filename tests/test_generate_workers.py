"""`generate --gpus N` on CPU: N spawned worker processes, each on its own share of the pending
requests, writing shards the driver merges; a fake engine for the mechanics, the embedded model
on the transformers backend for equality with the single-process path."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from genre_local.llm.tasks import TASKS
from genre_local.pipeline.distributed import ShardedExecutor, WorkersFailed
from genre_local.pipeline.plan import PlanSettings
from genre_local.pipeline.runner import RunSettings
from genre_local.pipeline.sharded_run import ShardedGenerationRun
from genre_local.pipeline.shards import RunFolder
from genre_local.pipeline.workers import ProcessDispatch, split_round_robin, worker_slots
from tests.support_generate import DATASET, FakeBackend, build_store, run_fake, store_rows
from tests.support_llm import prepared_model
from tests.support_scale import key_counts, outputs, real_settings, transformers_factory

ALL = ("summarize", "profile", "news", "chain")


class CrashingBackend(FakeBackend):
    """Dies (like an engine out of memory) on its `crash_at`-th engine call."""

    def __init__(self, crash_at: int):
        super().__init__()
        self.crash_at = crash_at

    def generate(self, requests):
        if len(self.calls) + 1 >= self.crash_at:
            raise MemoryError("engine ran out of memory")
        return super().generate(requests)


class SlowStartBackend(FakeBackend):
    """Takes START_SECONDS to open, like an engine loading its model."""

    START_SECONDS = 1.5

    def __init__(self):
        import time

        time.sleep(self.START_SECONDS)
        super().__init__()


def _run(db: Path, folder: Path, factory, workers: int = 2, batch_size: int = 1, tasks=ALL, settings: RunSettings | None = None):
    settings = settings or RunSettings(plan=PlanSettings(dataset=DATASET, model_id="fake-model"), backend="fake", batch_size=batch_size)
    dispatch = ProcessDispatch(factory, worker_slots(workers, on_gpu=False, cores=2), poll_seconds=0.1)
    run = ShardedGenerationRun(db, settings, ShardedExecutor(db, RunFolder(folder), dispatch))
    return run.run([TASKS[name] for name in tasks]), run.run_id


def test_round_robin_shares_are_disjoint_and_cover_everything():
    items = list(range(7))
    shares = split_round_robin(items, 3)
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(x for s in shares for x in s) == items
    assert split_round_robin(items[:1], 2) == [[0], []]


def test_worker_slots_one_gpu_or_a_core_range_each():
    assert [(s.device, s.cpu_cores) for s in worker_slots(2, on_gpu=True, cores=16)] == [("0", None), ("1", None)]
    assert [s.cpu_cores for s in worker_slots(2, on_gpu=False, cores=2)] == ["0-0", "1-1"]
    assert [s.cpu_cores for s in worker_slots(2, on_gpu=False, cores=8)] == ["0-3", "4-7"]
    assert [s.cpu_cores for s in worker_slots(3, on_gpu=False, cores=2)] == ["0-0", "1-1", "1-1"]


def test_two_processes_store_every_key_once_equal_to_one_process(tmp_path: Path):
    reference = build_store(tmp_path / "one.duckdb")
    run_fake(reference, batch_size=2)
    db = build_store(tmp_path / "two.duckdb")
    stats, run_id = _run(db, tmp_path / "run", FakeBackend, batch_size=2)
    assert key_counts(db) == key_counts(reference) == (17, 17)
    assert outputs(db) == outputs(reference)
    assert [(s.task, s.new) for s in stats] == [("summarize", 7), ("profile", 4), ("news", 3), ("chain", 3)]
    assert all(s.valid == s.new and s.invalid == 0 for s in stats)
    # The workers' dtype reaches every task's run row, also those after their engines started.
    assert store_rows(db, "SELECT DISTINCT dtype FROM generation_runs") == [("fake",)]
    assert not list((tmp_path / "run" / "pending").iterdir())  # every shard merged and moved aside
    again, _ = _run(db, tmp_path / "run", functools.partial(CrashingBackend, 1))  # nothing left to do: no worker starts
    assert all(s.new == 0 and s.skipped == s.requests for s in again)


def test_a_dead_worker_fails_the_run_and_a_rerun_finishes_exactly_once(tmp_path: Path):
    db = build_store(tmp_path / "g.duckdb")
    with pytest.raises(WorkersFailed, match=r"requests were not completed \(RuntimeError: worker genre-worker-\d exited with code 1"):
        _run(db, tmp_path / "run", functools.partial(CrashingBackend, 3), tasks=("summarize",))
    stored = key_counts(db)[0]
    assert 2 <= stored < 7  # each worker finished two batches of one before dying
    stats, _ = _run(db, tmp_path / "run", FakeBackend, tasks=("summarize",))
    assert stats[0].skipped == stored and stats[0].new == 7 - stored
    assert key_counts(db) == (7, 7)


def test_worker_engine_start_is_startup_not_outside_time(tmp_path: Path):
    """As in the single-process loop: the workers' engine start-up is startup_seconds, and the
    task's wall (hence outside-the-engine) time leaves it out."""
    import time

    db = build_store(tmp_path / "g.duckdb")
    started = time.perf_counter()
    stats, _ = _run(db, tmp_path / "run", SlowStartBackend, tasks=("summarize",))
    elapsed = time.perf_counter() - started
    (summary,) = stats
    assert summary.new == 7
    # Two workers start side by side: the wait is the slowest start, not the sum.
    assert SlowStartBackend.START_SECONDS <= summary.startup_seconds < 2 * SlowStartBackend.START_SECONDS
    assert summary.wall_seconds + summary.startup_seconds <= elapsed
    assert summary.as_json()["startup_seconds"] == pytest.approx(summary.startup_seconds, abs=1e-3)
    assert not list((tmp_path / "run" / "startup").glob("*.json"))  # each record read once


def test_startup_records_are_read_once_per_run_and_combined_as_wall_time(tmp_path: Path):
    from genre_local.pipeline.distributed import Startup, collect_startups, record_startup, startup_wall_seconds

    folder = RunFolder(tmp_path / "run").create()
    record_startup(folder, "r1", "driver", "cluster", 2.0)
    record_startup(folder, "r1", "w0", "engine", 5.0)
    record_startup(folder, "r1", "w1", "engine", 7.0)
    record_startup(folder, "r2", "w0", "engine", 1.0)
    (folder.root / "startup" / "r1.w9.bad.json").write_text("{not json")
    found = collect_startups(folder, "r1")
    assert sorted(found, key=lambda s: s.seconds) == [Startup("cluster", 2.0), Startup("engine", 5.0), Startup("engine", 7.0)]
    assert startup_wall_seconds(found) == 9.0  # the cluster first, then the slowest engine
    assert collect_startups(folder, "r1") == []  # read once, the corrupt one removed too
    assert collect_startups(folder, "r2") == [Startup("engine", 1.0)]
    assert startup_wall_seconds([]) == 0.0


@pytest.mark.slow
def test_embedded_model_two_workers_equal_the_single_process_path(tmp_path: Path, embedded_reference: Path):
    model = prepared_model()
    settings = real_settings(limit=2)
    reference = embedded_reference  # the single-process run (tests/conftest.py), shared with test_generate_ray
    db = build_store(tmp_path / "two.duckdb")
    stats, _ = _run(db, tmp_path / "run", transformers_factory(model), tasks=("summarize",), settings=settings)
    assert stats[0].new == 2 and stats[0].completion_tokens > 0
    assert key_counts(db) == key_counts(reference) == (2, 2)
    assert outputs(db) == outputs(reference)  # greedy: the same text for every key


# The command line: flags checked before any model loads; the N-process path end to end.
def _cli(db: Path, *args: str):
    from typer.testing import CliRunner

    from genre_local.cli import app

    return CliRunner().invoke(app, ["--db", str(db), "generate", "--dataset", DATASET, "--task", "summarize", *args])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gpus", "0"], "--gpus 0: must be 1 or more"),
        (["--engine", "spark"], "--engine 'spark' is not known; use local or ray"),
        (["--ray-address", "10.0.0.1:6379"], "--ray-address applies to --engine ray only"),
        (["--replicas", "2"], "--replicas applies to --engine ray only"),
        (["--engine", "ray", "--replicas", "0"], "--replicas 0: must be 1 or more"),
        (["--engine", "ray", "--tensor-parallel", "0"], "--tensor-parallel 0: must be 1 or more"),
        (["--run-dir", "shards"], "--run-dir applies to --gpus N (N > 1) or --engine ray only"),
    ],
)
def test_scaling_flag_mistakes_are_one_line_exit_2(tmp_path: Path, args, message):
    db = build_store(tmp_path / "g.duckdb")
    result = _cli(db, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "models").exists() and not (tmp_path / ".genre-cache").exists()


def test_a_file_as_run_dir_is_refused(tmp_path: Path):
    db = build_store(tmp_path / "g.duckdb")
    (tmp_path / "shards").write_text("x")
    result = _cli(db, "--gpus", "2", "--run-dir", str(tmp_path / "shards"))
    assert result.exit_code == 2 and f"--run-dir {tmp_path / 'shards'} is a file" in result.stderr


def test_scale_keys_come_from_config_and_flags_override_them():
    from genre_local.config import GenerateConfig
    from genre_local.pipeline.scale import scale_from_config

    config = GenerateConfig(gpus=3, engine="ray", ray_address="10.0.0.1:6379")
    assert (s := scale_from_config(config)).gpus == 3 and s.engine == "ray" and s.ray_address == "10.0.0.1:6379"
    s = scale_from_config(config, gpus=1, engine="local", ray_address="10.0.0.2:1")
    assert (s.gpus, s.engine, s.ray_address) == (1, "local", "10.0.0.2:1")
    assert scale_from_config(GenerateConfig()) == scale_from_config(GenerateConfig(), gpus=1, engine="local")


def test_config_gpus_reaches_the_scaling_checks(tmp_path: Path):
    """[generate] gpus = 2 makes the run sharded: --run-dir is accepted as an option and then
    checked as a folder (without the key, --run-dir alone is refused as needing --gpus N)."""
    from typer.testing import CliRunner

    from genre_local.cli import app

    db = build_store(tmp_path / "g.duckdb")
    (tmp_path / "shards").write_text("x")
    config = tmp_path / "genre.toml"
    config.write_text("[generate]\ngpus = 2\n")
    result = CliRunner().invoke(app, ["--config", str(config), "--db", str(db), "generate", "--dataset", DATASET,
                                      "--task", "summarize", "--run-dir", str(tmp_path / "shards")])
    assert result.exit_code == 2 and f"--run-dir {tmp_path / 'shards'} is a file" in result.stderr
    config.write_text("[generate]\nengine = 'spark'\n")
    result = CliRunner().invoke(app, ["--config", str(config), "--db", str(db), "generate", "--dataset", DATASET])
    assert result.exit_code == 2 and "[generate] engine = 'spark' is not known" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unreachable_ray_cluster_is_one_line_exit_2(tmp_path: Path):
    db = build_store(tmp_path / "g.duckdb")
    result = _cli(db, "--engine", "ray", "--ray-address", "127.0.0.1:1", "--model", str(prepared_model()), "--backend", "transformers")
    assert result.exit_code == 2, result.output
    assert "--ray-address 127.0.0.1:1: nothing answers there" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert key_counts(db) == (0, 0)


@pytest.mark.slow
def test_cli_gpus_2_on_cpu_stores_each_key_once_and_reruns_nothing(tmp_path: Path):
    import json

    db = build_store(tmp_path / "g.duckdb")
    args = ("--gpus", "2", "--model", str(prepared_model()), "--backend", "transformers", "--limit", "2", "--batch-size", "1", "--json")
    result = _cli(db, *args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert (payload["requested"], payload["new"], payload["valid"]) == (2, 2, 2)
    assert key_counts(db) == (2, 2)
    shards = tmp_path / ".genre-cache" / "generation-shards"
    assert len(list((shards / "merged").glob("*.parquet"))) == 2 and not list((shards / "pending").iterdir())
    again = _cli(db, *args)
    assert again.exit_code == 0 and json.loads(again.stdout.strip().splitlines()[-1])["skipped"] == 2
    assert "no model loaded" in again.stdout
