"""The transformers backend: batched `generate` with left padding, decoding constrained by the
same JSON schemas through xgrammar's logits processor when xgrammar is installed (it comes
with vLLM). The fallback without vLLM and the baseline in the benchmarks.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from typing import Any

from genre_local.errors import UserError
from genre_local.llm.backend import (
    CandidateQueries, EngineOptions, GenRequest, GenResult, ScoreRequest, ScoreResult,
)
from genre_local.llm.engine_sizing import resolve_dtype


class TransformersBackend:
    name = "transformers"

    def __init__(self, options: EngineOptions):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.options = options
        dtype_name = resolve_dtype(options.dtype, torch.cuda.is_available())  # a torch dtype's name
        self.dtype = dtype_name  # the torch dtype the weights load in ("half" is float16)
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(options.model_dir))
            self._model = AutoModelForCausalLM.from_pretrained(str(options.model_dir), dtype=getattr(torch, dtype_name))
        except (OSError, ValueError) as exc:
            first = " ".join(str(exc).split())[:200]
            raise UserError(f"transformers cannot load model folder {options.model_dir}: {first}") from exc
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        if self._device == "cpu":
            self._set_threads(options.threads)
        self._model.to(self._device).eval()
        self._tokenizer.padding_side = "left"
        if self._tokenizer.pad_token_id is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        self._eos_ids = self._stop_ids()
        self._grammar_compiler: Any = None
        self._compiled: dict[str, Any] = {}
        # Requests with a schema decode constrained where xgrammar is installed (it comes with vLLM).
        self._has_xgrammar = importlib.util.find_spec("xgrammar") is not None

    @staticmethod
    def _set_threads(threads: int | None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
            return
        cores = os.cpu_count() or 2
        if threads is None and "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() >= cores > 1:
            # Like vLLM on CPU, leave one core free: with every core busy, OpenMP's spin-waits
            # collapse under any competing load (measured 16x slower decode on 2 shared cores).
            torch.set_num_threads(cores - 1)

    def _stop_ids(self) -> set[int]:
        ids = set()
        for source in (self._model.generation_config.eos_token_id, self._tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, (list, tuple)):
                ids.update(int(i) for i in source)
        return ids

    def _grammar(self, schema: dict[str, Any]) -> Any:
        import xgrammar as xgr

        if self._grammar_compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(self._tokenizer, vocab_size=self._model.config.vocab_size)
            self._grammar_compiler = xgr.GrammarCompiler(info)
        key = json.dumps(schema, sort_keys=True)
        if key not in self._compiled:
            # Compile the schema as written: property order is the order the model writes in
            # (title before abstract), so the cache key is sorted but the schema is not.
            self._compiled[key] = self._grammar_compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
        return self._compiled[key]

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        prompts = [
            self._tokenizer.apply_chat_template(list(r.messages), add_generation_prompt=True, tokenize=False)
            for r in requests
        ]
        results: list[GenResult | None] = [None] * len(requests)
        # Similar lengths together: less padding per micro-batch; same sampling settings only.
        order = sorted(
            range(len(requests)),
            key=lambda i: (requests[i].temperature, requests[i].top_p, requests[i].max_tokens, requests[i].repetition_penalty, len(prompts[i])),
        )
        step = max(1, self.options.micro_batch)
        for start in range(0, len(order), step):
            chunk = order[start : start + step]
            groups: dict[tuple[float, float, int, float], list[int]] = {}
            for i in chunk:
                r = requests[i]
                groups.setdefault((r.temperature, r.top_p, r.max_tokens, r.repetition_penalty), []).append(i)
            for indices in groups.values():
                for i, result in zip(indices, self._generate_group([requests[i] for i in indices], [prompts[i] for i in indices])):
                    results[i] = result
        return [r for r in results if r is not None]

    def _generate_group(self, requests: list[GenRequest], prompts: list[str]) -> list[GenResult]:
        import torch

        first = requests[0]
        encoded = self._tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self._device)
        processors = []
        if self._has_xgrammar and all(r.schema for r in requests):
            import xgrammar as xgr

            # A fresh processor per generate() call: it keeps per-row matcher state.
            processors.append(xgr.contrib.hf.LogitsProcessor([self._grammar(r.schema) for r in requests]))
        sampling: dict[str, Any] = {"do_sample": False}
        if first.temperature > 0:
            torch.manual_seed(first.seed)
            sampling = {"do_sample": True, "temperature": first.temperature, "top_p": first.top_p}
        with torch.inference_mode():
            output = self._model.generate(
                **encoded,
                max_new_tokens=first.max_tokens,
                repetition_penalty=first.repetition_penalty if first.repetition_penalty != 1.0 else None,
                pad_token_id=self._tokenizer.pad_token_id,
                logits_processor=processors or None,
                **sampling,
            )
        prompt_width = encoded["input_ids"].shape[1]
        results = []
        for row in range(len(requests)):
            generated = output[row, prompt_width:].tolist()
            length = len(generated)
            finish = "length"
            for position, token in enumerate(generated):
                if token in self._eos_ids:
                    length = position + 1
                    finish = "stop"
                    break
            text = self._tokenizer.decode(generated[:length], skip_special_tokens=True)
            results.append(
                GenResult(
                    text=text,
                    prompt_tokens=int(encoded["attention_mask"][row].sum()),
                    completion_tokens=length,
                    finish_reason=finish,
                )
            )
        return results

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Each candidate appended to its prompt, one forward pass per micro-batch of such
        sequences (right-padded), its tokens' log-probabilities read off and summed."""
        import torch

        results = []
        step = max(1, self.options.micro_batch)
        for request in requests:
            request_queries = CandidateQueries.of(self._tokenizer, request)
            found: dict[tuple[int, ...], dict[int, float]] = {}
            paths = list(request_queries.branches)
            for begin in range(0, len(paths), step):
                chunk = paths[begin : begin + step]
                rows = [request_queries.prompt_ids + list(path) for path in chunk]
                width = max(len(r) for r in rows)
                pad = self._tokenizer.pad_token_id
                ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self._device)
                mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self._device)
                with torch.inference_mode():
                    logits = self._model(input_ids=ids, attention_mask=mask).logits
                for row, path in enumerate(chunk):
                    last = torch.log_softmax(logits[row, len(rows[row]) - 1].float(), dim=-1)
                    found[path] = {token: float(last[token]) for token in request_queries.branches[path]}
            results.append(request_queries.result(found))
        return results

    def close(self) -> None:
        self._model = None
