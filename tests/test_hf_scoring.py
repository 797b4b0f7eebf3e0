"""The transformers backend's candidate scoring on the embedded model: each candidate's score is
the sum of its tokens' log-probabilities after the prompt, as one plain forward pass over prompt
+ candidate gives it (shared beginnings are queried once, padded rows change nothing)."""

from __future__ import annotations

import pytest
import torch

from genre_local.llm.backend import EngineOptions, ScoreRequest
from tests.support_llm import prepared_model

pytestmark = pytest.mark.slow


def _direct(model, tokenizer, request: ScoreRequest, candidate: str) -> float:
    text = tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
    prompt = tokenizer.encode(text + request.answer_prefix, add_special_tokens=False)
    tokens = tokenizer.encode(candidate, add_special_tokens=False)
    tokens = tokens[:1] if request.first_token else tokens
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt + tokens])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return sum(float(logprobs[len(prompt) - 1 + i, token]) for i, token in enumerate(tokens))


def test_scores_are_the_candidates_summed_token_logprobs() -> None:
    from genre_local.llm.hf_backend import TransformersBackend

    backend = TransformersBackend(EngineOptions(model_dir=prepared_model(), dtype="float32", threads=1, micro_batch=2))
    try:
        messages = ({"role": "user", "content": "Name one colour."},)
        full = ScoreRequest(messages, "My answer:", (" red", " light blue", " light green", " light"))
        first = ScoreRequest(messages, "My answer:", (" red", " light blue"), first_token=True)
        results = backend.score([full, first])
        for request, result in zip((full, first), results, strict=True):
            expected = [_direct(backend._model, backend._tokenizer, request, c) for c in request.candidates]
            assert result.logprobs == pytest.approx(expected, abs=1e-3)
            assert result.prompt_tokens > 0 and result.scored_tokens >= len(set(request.candidates)) - 1
        assert results[1].logprobs[1] == pytest.approx(results[0].logprobs[3], abs=1e-3)  # " light" alone
    finally:
        backend.close()
