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
