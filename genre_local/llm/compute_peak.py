"""How close generation runs to the hardware: the model's FLOPs per token, counted from its
config.json, and this machine's matrix-multiply rate, measured with torch in the same run.

The engine's achieved FLOP/s divided by the GEMM rate at the same dtype, thread count and
row count is its share of what this box can do on the model's own matrix shapes, which is a
fairer yardstick than a datasheet peak (clock, AVX-512 port count and turbo vary per VM).

How FLOPs are counted (multiply-add = 2 FLOPs):
- linear layers: 2 x (the matmul parameters of every decoder layer) per token computed;
  the LM head (vocab x hidden) once per *forward position whose logits are used*: every decode
  step, and only the last prompt token in prefill (vLLM computes no other prompt logits);
- attention: QK^T and AV, 4 x layers x query heads x head_dim x context per token, with the
  context counted causally (a token at position p attends to p + 1 tokens);
- prompt tokens served from the prefix cache cost nothing; embeddings, norms, rotary and
  softmax are left out (a few percent of the total at this size).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @property
    def layer_matmul_params(self) -> int:
        """q, k, v, o projections and the gated MLP (gate, up, down) of one decoder layer."""
        q_and_o = 2 * self.hidden * self.heads * self.head_dim
        k_and_v = 2 * self.hidden * self.kv_heads * self.head_dim
        mlp = 3 * self.hidden * self.intermediate
        return q_and_o + k_and_v + mlp

    @property
    def body_params(self) -> int:
        return self.layers * self.layer_matmul_params

    @property
    def head_params(self) -> int:
        return self.vocab * self.hidden

    def attention_flops(self, first_position: int, tokens: int) -> int:
        """QK^T and AV for `tokens` consecutive positions starting at `first_position`."""
        if tokens <= 0:
            return 0
        # Sum of contexts (p + 1) for p in [first, first + tokens).
        contexts = tokens * first_position + tokens * (tokens + 1) // 2
        return 4 * self.layers * self.heads * self.head_dim * contexts

    def prefill_flops(self, prompt_tokens: int, cached_tokens: int) -> int:
        """Work of one request's prefill: its uncached prompt tokens and one LM-head row."""
        computed = max(0, prompt_tokens - cached_tokens)
        if computed == 0:
            return 0
        return 2 * self.body_params * computed + 2 * self.head_params + self.attention_flops(cached_tokens, computed)

    def decode_flops(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Work of one request's decode steps: the first completion token comes out of prefill,
        each later one is one forward pass over the previous token."""
        steps = max(0, completion_tokens - 1)
        return 2 * (self.body_params + self.head_params) * steps + self.attention_flops(prompt_tokens, steps)


def read_model_shape(model_dir: Path) -> ModelShape | None:
    """From a Hugging Face folder's config.json; None when fields are missing."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
        config = config.get("text_config", config)
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        return ModelShape(
            layers=int(config["num_hidden_layers"]), hidden=hidden, intermediate=int(config["intermediate_size"]),
            heads=heads, kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads), vocab=int(config["vocab_size"]),
        )
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None


@dataclass(frozen=True)
class GemmRate:
    dtype: str
    threads: int
    rows: int  # tokens per matmul (M): a decode batch or a prefill chunk
    gflops: float


def model_gemm_shapes(shape: ModelShape) -> tuple[tuple[int, int], ...]:
    """(K, N) of one layer's matmuls, weighted as the layer runs them: q/o, k/v, gate/up, down."""
    q = shape.heads * shape.head_dim
    kv = shape.kv_heads * shape.head_dim
    return ((shape.hidden, q), (shape.hidden, kv), (shape.hidden, kv), (q, shape.hidden),
            (shape.hidden, shape.intermediate), (shape.hidden, shape.intermediate), (shape.intermediate, shape.hidden))


def measure_gemm(shape: ModelShape, dtype: str, threads: int, rows: int, seconds: float = 1.0) -> GemmRate:
    """torch matmul rate over one decoder layer's shapes (y = x @ W, x: rows x K), run for about
    `seconds` after one warm-up pass. Sets torch's thread count for the measurement and restores it."""
    import torch

    torch_dtype = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(0)
    pairs = [
        (torch.randn(rows, k, generator=generator).to(torch_dtype), torch.randn(k, n, generator=generator).to(torch_dtype))
        for k, n in model_gemm_shapes(shape)
    ]
    flops_per_pass = sum(2 * rows * w.shape[0] * w.shape[1] for _, w in pairs)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for x, w in pairs:
                torch.matmul(x, w)
            passes, started = 0, time.perf_counter()
            while True:
                for x, w in pairs:
                    torch.matmul(x, w)
                passes += 1
                elapsed = time.perf_counter() - started
                if elapsed >= seconds and passes >= 3:
                    break
    finally:
        torch.set_num_threads(before)
    return GemmRate(dtype=dtype, threads=threads, rows=rows, gflops=flops_per_pass * passes / elapsed / 1e9)
