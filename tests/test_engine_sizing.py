"""[generate] platform defaults: dtype auto, memory per platform, tensor_parallel_size and
max_num_seqs reaching vLLM (with a stand-in LLM class: no engine starts here)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from genre_local.config import GenerateConfig, load_config
from genre_local.errors import UserError
from genre_local.llm import engine_sizing
from genre_local.llm.backend import EngineOptions
from genre_local.llm.engine_sizing import KvShape, cpu_kv_cache_bytes, engine_memory, read_kv_shape, resolve_dtype
from genre_local.machine import MemInfo

GIB = 2**30
SMOLLM2 = {"num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "hidden_size": 576}


def _model(tmp_path: Path, config: dict = SMOLLM2) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_dtype_auto_is_bfloat16_on_cuda_and_on_a_native_bf16_cpu_else_float32() -> None:
    assert resolve_dtype("auto", on_cuda=True) == "bfloat16"
    assert resolve_dtype("auto", on_cuda=False) == "float32"
    assert resolve_dtype("auto", on_cuda=False, cpu_native_bf16=True) == "bfloat16"
    assert resolve_dtype("float16", on_cuda=False) == "float16"
    assert resolve_dtype("float32", on_cuda=False, cpu_native_bf16=True) == "float32"  # a set dtype stays
    # ... by its own name: what the engine computes in and generation_runs records ("half" is float16)
    assert resolve_dtype("half", on_cuda=True) == resolve_dtype("float16", on_cuda=False) == "float16"
    assert resolve_dtype("float", on_cuda=False, cpu_native_bf16=True) == "float32"
    assert GenerateConfig().dtype == "auto" and GenerateConfig().gpu_memory_utilization is None


def test_kv_shape_from_the_model_config(tmp_path: Path) -> None:
    shape = read_kv_shape(_model(tmp_path))
    assert shape == KvShape(layers=30, kv_heads=3, head_dim=64)
    assert shape.bytes_per_token("float32") == 2 * 30 * 3 * 64 * 4
    assert shape.bytes_per_token("bfloat16") == 2 * 30 * 3 * 64 * 2
    (tmp_path / "mha").mkdir()
    no_kv = _model(tmp_path / "mha", {"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64, "head_dim": 8})
    assert read_kv_shape(no_kv) == KvShape(2, 4, 8)  # no num_key_value_heads: every head has its own
    assert read_kv_shape(tmp_path / "missing") is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    assert read_kv_shape(tmp_path / "bad") is None


def test_cpu_kv_cache_is_sized_from_model_and_batch_not_half_the_ram() -> None:
    shape = KvShape(30, 3, 64)
    per_sequence = shape.bytes_per_token("float32") * 2048
    size = cpu_kv_cache_bytes(shape, "float32", 2048, 32, 24 * GIB)
    assert size == 32 * per_sequence and size < 0.15 * 24 * GIB  # 2.8 GiB, not the 12 GiB of 0.5
    assert cpu_kv_cache_bytes(shape, "float32", 2048, 4096, 24 * GIB) == int(0.25 * 24 * GIB)  # capped
    assert cpu_kv_cache_bytes(shape, "float32", 2048, 32, GIB // 8) == per_sequence  # never below one sequence
    with pytest.raises(UserError, match="max_model_len 2048"):
        cpu_kv_cache_bytes(shape, "float32", 2048, 32, 24 * GIB, available_ram_bytes=per_sequence // 2)


def test_engine_memory_per_platform(tmp_path: Path) -> None:
    model = _model(tmp_path)
    common = dict(model_dir=model, dtype="float32", max_model_len=1024, max_num_seqs=None, total_ram_bytes=24 * GIB)
    assert engine_memory(0.3, on_cuda=False, **common) == engine_sizing.EngineMemory(gpu_memory_utilization=0.3)
    assert engine_memory(None, on_cuda=True, **common).gpu_memory_utilization == engine_sizing.GPU_MEMORY_SHARE
    cpu = engine_memory(None, on_cuda=False, **common)
    assert cpu.gpu_memory_utilization is None
    assert cpu.kv_cache_bytes == engine_sizing.CPU_MAX_NUM_SEQS * 1024 * KvShape(30, 3, 64).bytes_per_token("float32")
    assert engine_memory(None, on_cuda=False, **common | {"max_num_seqs": 2}).kv_cache_bytes == cpu.kv_cache_bytes // 16
    unknown = engine_memory(None, on_cuda=False, **common | {"model_dir": tmp_path / "missing"})
    assert unknown == engine_sizing.EngineMemory()  # vLLM's own default


def test_generate_keys_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "genre.toml"
    config.write_text("[generate]\ntensor_parallel_size = 2\nmax_num_seqs = 8\ngpu_memory_utilization = 0.8\n")
    loaded = load_config(config).generate
    assert (loaded.tensor_parallel_size, loaded.max_num_seqs, loaded.gpu_memory_utilization) == (2, 8, 0.8)
    for text, needle in (("tensor_parallel_size = 0", "tensor_parallel_size = 0: must be between 1"),
                         ("max_num_seqs = 0", "max_num_seqs = 0: must be between 1"),
                         ("max_num_seqs = 'many'", "expected int"),
                         ("gpu_memory_utilization = 0", "gpu_memory_utilization = 0.0: must be a number above 0")):
        config.write_text(f"[generate]\n{text}\n")
        with pytest.raises(UserError, match=needle):
            load_config(config)


class _FakeLLM:
    seen: dict = {}
    bind: str | None = None  # VLLM_CPU_OMP_THREADS_BIND while the engine starts

    def __init__(self, **kwargs):
        import os

        _FakeLLM.seen = kwargs
        _FakeLLM.bind = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")


@pytest.fixture()
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = _FakeLLM  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    return _FakeLLM


@pytest.mark.parametrize(("on_cpu", "native_bf16"), [(True, False), (True, True), (False, False)])
def test_vllm_backend_passes_the_platform_defaults(tmp_path: Path, monkeypatch, capsys, fake_vllm, on_cpu: bool,
                                                   native_bf16: bool) -> None:
    from genre_local.llm import vllm_backend

    monkeypatch.setattr(vllm_backend, "_on_cpu", lambda: on_cpu)
    monkeypatch.setattr(vllm_backend, "cpu_has_native_bf16", lambda: native_bf16)
    monkeypatch.setattr(vllm_backend, "meminfo_gib", lambda: MemInfo(24.0, 20.0))
    vllm_backend.VllmBackend(EngineOptions(model_dir=_model(tmp_path), max_model_len=1024, tensor_parallel_size=1))
    seen = fake_vllm.seen
    assert seen["tensor_parallel_size"] == 1 and seen["max_model_len"] == 1024
    if on_cpu:
        dtype = "bfloat16" if native_bf16 else "float32"
        assert seen["dtype"] == dtype and "gpu_memory_utilization" not in seen
        assert seen["kv_cache_memory_bytes"] == 32 * 1024 * KvShape(30, 3, 64).bytes_per_token(dtype)
        assert ("vLLM on CPU: bfloat16" in capsys.readouterr().err) == native_bf16  # the choice is said
        assert seen["max_num_seqs"] == engine_sizing.CPU_MAX_NUM_SEQS
    else:
        assert seen["dtype"] == "bfloat16" and seen["gpu_memory_utilization"] == 0.9
        assert "kv_cache_memory_bytes" not in seen and "max_num_seqs" not in seen
    vllm_backend.VllmBackend(EngineOptions(model_dir=tmp_path, dtype="float16", gpu_memory_utilization=0.4,
                                           tensor_parallel_size=2, max_num_seqs=7))
    seen = fake_vllm.seen
    assert seen["dtype"] == "float16" and seen["gpu_memory_utilization"] == 0.4 and seen["max_num_seqs"] == 7
    assert seen["tensor_parallel_size"] == 2 and "kv_cache_memory_bytes" not in seen


def test_vllm_backend_on_cpu_refuses_an_explicit_share_larger_than_free_ram(tmp_path: Path, monkeypatch,
                                                                           fake_vllm) -> None:
    from genre_local.llm import vllm_backend

    monkeypatch.setattr(vllm_backend, "_on_cpu", lambda: True)
    monkeypatch.setattr(vllm_backend, "meminfo_gib", lambda: MemInfo(24.0, 4.0))
    fake_vllm.seen = {}
    with pytest.raises(UserError, match="gpu_memory_utilization 0.5 reserves 12.0 GiB"):
        vllm_backend.VllmBackend(EngineOptions(model_dir=_model(tmp_path), gpu_memory_utilization=0.5))
    assert fake_vllm.seen == {}  # no engine started


def test_the_model_gets_every_core_only_on_a_quiet_machine() -> None:
    from genre_local.llm.engine_sizing import CPU_IDLE_LOAD_PER_CORE, cpu_threads_bind

    assert cpu_threads_bind(None, [1, 0], load_1min=0.2) == "0,1"  # idle 2-core box: both cores
    threshold = CPU_IDLE_LOAD_PER_CORE * 2
    assert cpu_threads_bind(None, [0, 1], load_1min=threshold - 0.01) == "0,1"
    assert cpu_threads_bind(None, [0, 1], load_1min=threshold) is None  # loaded: vLLM's default, one core
    assert cpu_threads_bind(None, [0, 1], load_1min=8.0) is None
    assert cpu_threads_bind("1", [0, 1], load_1min=0.0) is None  # the user's binding stays
    assert cpu_threads_bind(None, [3], load_1min=0.0) is None  # one core: nothing to widen
    assert cpu_threads_bind(None, list(range(8)), load_1min=0.0) is None  # more cores: vLLM's layout, unmeasured


@pytest.mark.parametrize(("load", "user_bind", "expected"), [(0.1, None, "0,1"), (6.0, None, None), (0.1, "1", "1")])
def test_vllm_backend_binds_every_core_only_on_a_quiet_machine(tmp_path: Path, monkeypatch, fake_vllm, load, user_bind,
                                                                expected) -> None:
    from genre_local.llm import vllm_backend

    monkeypatch.setattr(vllm_backend, "_on_cpu", lambda: True)
    monkeypatch.setattr(vllm_backend, "meminfo_gib", lambda: MemInfo(24.0, 20.0))
    monkeypatch.setattr(vllm_backend.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(vllm_backend.os, "sched_getaffinity", lambda pid: {0, 1})
    if user_bind is None:
        monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    else:
        monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", user_bind)
    vllm_backend.VllmBackend(EngineOptions(model_dir=_model(tmp_path), max_model_len=1024))
    assert fake_vllm.bind == expected
    import os

    assert os.environ.get("VLLM_CPU_OMP_THREADS_BIND") == user_bind  # the process's environment is left as it was
