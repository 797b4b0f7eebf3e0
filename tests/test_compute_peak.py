"""FLOPs counted from a model's config.json, the CPU's bf16 flags, and the torch GEMM probe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genre_local.llm.compute_peak import (
    ModelShape,
    measure_gemm,
    model_gemm_shapes,
    read_model_shape,
)

SMOLLM2 = {"num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "hidden_size": 576,
           "intermediate_size": 1536, "head_dim": 64, "vocab_size": 49152}


def _shape(tmp_path: Path, config: dict = SMOLLM2) -> ModelShape | None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return read_model_shape(tmp_path)


def test_smollm2_parameters_match_its_published_size(tmp_path: Path) -> None:
    shape = _shape(tmp_path)
    assert shape is not None
    # Per layer: q, o 576x576; k, v 576x192; gate, up, down 576x1536.
    assert shape.layer_matmul_params == 2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536
    assert shape.body_params == 30 * 3_538_944
    assert shape.head_params == 49152 * 576
    # With the (tied) embedding counted once, SmolLM2-135M has 134.5 M parameters (norms aside).
    assert (shape.body_params + shape.head_params) / 1e6 == pytest.approx(134.5, abs=0.1)


def test_prefill_counts_uncached_tokens_and_one_head_row(tmp_path: Path) -> None:
    shape = _shape(tmp_path)
    assert shape.attention_flops(0, 3) == 4 * 30 * 9 * 64 * (1 + 2 + 3)
    assert shape.attention_flops(10, 2) == 4 * 30 * 9 * 64 * (11 + 12)
    assert shape.attention_flops(5, 0) == 0
    full = shape.prefill_flops(100, 0)
    assert full == 2 * shape.body_params * 100 + 2 * shape.head_params + shape.attention_flops(0, 100)
    cached = shape.prefill_flops(100, 64)
    assert cached == 2 * shape.body_params * 36 + 2 * shape.head_params + shape.attention_flops(64, 36)
    assert shape.prefill_flops(100, 100) == 0  # all from the cache: nothing computed


def test_decode_counts_one_step_per_token_after_the_first(tmp_path: Path) -> None:
    shape = _shape(tmp_path)
    per_step = 2 * (shape.body_params + shape.head_params)
    assert shape.decode_flops(50, 1) == 0  # the first token comes out of prefill
    assert shape.decode_flops(50, 3) == 2 * per_step + shape.attention_flops(50, 2)
    assert shape.decode_flops(50, 0) == 0


def test_model_shape_needs_the_fields(tmp_path: Path) -> None:
    assert read_model_shape(tmp_path) is None  # no config.json
    assert _shape(tmp_path, {k: v for k, v in SMOLLM2.items() if k != "intermediate_size"}) is None
    nested = _shape(tmp_path, {"text_config": {**SMOLLM2, "head_dim": None}})
    assert nested is not None and nested.head_dim == 64  # hidden / heads when head_dim is not given


def test_gemm_probe_measures_the_layer_shapes(tmp_path: Path) -> None:
    import torch

    shape = _shape(tmp_path)
    assert model_gemm_shapes(shape)[0] == (576, 576) and (1536, 576) in model_gemm_shapes(shape)
    threads = torch.get_num_threads()
    rate = measure_gemm(shape, "float32", 1, 8, seconds=0.05)
    assert rate.dtype == "float32" and rate.threads == 1 and rate.rows == 8 and rate.gflops > 0
    assert torch.get_num_threads() == threads  # restored
