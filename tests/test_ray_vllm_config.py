"""The Ray GPU branch's pieces (genre_local/pipeline/ray_engine.py) against the installed Ray and
vLLM APIs, without a GPU: the processor config, what the preprocess step hands Ray's vLLM stage
(built into SamplingParams exactly as that stage builds them), the Arrow round trip of those rows,
and the postprocess step back to planned rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genre_local.llm.backend import EngineOptions
from genre_local.llm.tasks import TASKS
from genre_local.pipeline.distributed import item_to_row, row_to_item
from genre_local.pipeline.plan import PlanSettings, Planner
from genre_local.pipeline.ray_engine import RayCluster, VllmPostprocess, vllm_preprocess, vllm_processor_config
from genre_local.store import open_store
from tests.support_generate import DATASET, build_store


@pytest.fixture(scope="module")
def planned_rows(tmp_path_factory) -> list[dict]:
    db = build_store(tmp_path_factory.mktemp("ray-vllm") / "g.duckdb")
    with open_store(db) as store:
        planner = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="m", seed=5))
        items = [planner.plan(store.conn, TASKS[task], 1)[0] for task in ("summarize", "profile")]
    return [item_to_row(i) for i in items]


def test_processor_config_builds_without_a_gpu():
    pytest.importorskip("ray.data.llm")
    options = EngineOptions(model_dir=Path("/models/llama-8b"), max_model_len=4096, gpu_memory_utilization=0.85, max_num_seqs=128)
    config = vllm_processor_config(options, RayCluster(replicas=3, tensor_parallel=2), batch_size=0)
    assert config.model_source == "/models/llama-8b"
    assert config.concurrency == 3 and config.batch_size == 1
    assert config.task_type == "generate" and config.engine_kwargs.pop("task_type", "generate") == "generate"  # Ray adds it
    assert config.engine_kwargs == {
        "tensor_parallel_size": 2, "max_model_len": 4096, "dtype": "bfloat16", "enable_prefix_caching": True,
        "max_num_seqs": 128, "gpu_memory_utilization": 0.85,
    }
    unset = vllm_processor_config(EngineOptions(model_dir=Path("/m"), dtype="float16", prefix_caching=False), RayCluster(), 64)
    unset.engine_kwargs.pop("task_type", None)
    assert unset.engine_kwargs == {"tensor_parallel_size": 1, "max_model_len": 2048, "dtype": "float16", "enable_prefix_caching": False}
    assert unset.chat_template_stage  # Ray applies the model's chat template to `messages`


def test_preprocessed_rows_survive_arrow_and_become_vllm_sampling_params(planned_rows):
    pa = pytest.importorskip("pyarrow")
    rows = [vllm_preprocess(r) for r in planned_rows]
    # Ray Data holds rows in Arrow blocks: two tasks' rows share one block.
    back = pa.Table.from_pylist(rows).to_pylist()
    for planned, row in zip(planned_rows, back, strict=True):
        assert row["messages"] == json.loads(planned["messages"])
        assert json.loads(row["sampling_params"]["structured_outputs"]["json"]) == json.loads(planned["schema"])
    vllm = pytest.importorskip("vllm")
    from vllm.sampling_params import StructuredOutputsParams

    for planned, row in zip(planned_rows, back, strict=True):
        sampling = dict(row["sampling_params"])
        structured = StructuredOutputsParams(**sampling.pop("structured_outputs"))  # as Ray's vLLM stage does
        params = vllm.SamplingParams(**sampling, structured_outputs=structured)
        assert params.max_tokens == planned["max_tokens"] and params.seed == 5
        assert json.loads(params.structured_outputs.json) == json.loads(planned["schema"])


def test_postprocess_gives_back_the_planned_row_and_the_answer(planned_rows):
    planned = planned_rows[0]
    engine_row = {**vllm_preprocess(planned), "generated_text": '{"title": "x"}', "num_input_tokens": 120,
                  "num_generated_tokens": 7, "prompt": "rendered", "sampling_params": {}}
    out = VllmPostprocess(list(planned))(engine_row)
    assert {k: out[k] for k in planned} == planned
    assert (out["text"], out["prompt_tokens"], out["completion_tokens"]) == ('{"title": "x"}', 120, 7)
    assert row_to_item(out).fingerprint == planned["fingerprint"]


@pytest.mark.parametrize("dtype,recorded", [("auto", "bfloat16"), ("half", "float16")])
def test_the_gpu_branch_records_its_engines_dtype_on_the_run_row(tmp_path: Path, monkeypatch, dtype, recorded):
    """Regression: runs through Ray's vLLM processor recorded no dtype in generation_runs, where
    the local and worker paths record their engines'. The processor (which needs GPUs) is
    replaced by a double answering as the fake engine does, one shard per pass; the dispatcher,
    the driver's executor and the run row are the real ones."""
    from genre_local.pipeline import ray_engine
    from genre_local.pipeline.distributed import ShardedExecutor, complete_to_shard
    from genre_local.pipeline.runner import RunSettings
    from genre_local.pipeline.sharded_run import ShardedGenerationRun
    from genre_local.pipeline.shards import RunFolder
    from tests.support_generate import FakeBackend, store_rows

    def fake_pass(items, job, cluster, options, attempt):
        yield complete_to_shard(FakeBackend(), items, job, "gpu0")

    monkeypatch.setattr(ray_engine, "_vllm_pass", fake_pass)
    db = build_store(tmp_path / "g.duckdb")
    options = EngineOptions(model_dir=Path("/models/m"), dtype=dtype)
    dispatch = ray_engine.RayDispatch(RayCluster(), FakeBackend, options, backend="vllm")
    settings = RunSettings(plan=PlanSettings(dataset=DATASET, model_id="m"), backend="vllm", batch_size=4)
    run = ShardedGenerationRun(db, settings, ShardedExecutor(db, RunFolder(tmp_path / "run"), dispatch._gpu))
    [stats] = run.run([TASKS["summarize"]])
    assert stats.new > 0 and stats.startup_seconds == 0.0  # the replicas' start is not measured apart
    assert store_rows(db, "SELECT task, dtype FROM generation_runs") == [("summarize", recorded)]
    assert ray_engine.processor_dtype(options) == recorded  # the dtype the processor config asks vLLM for
