"""Run-time machine checks: native bf16 detection, the bf16 choice, automatic thread counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.config import TrainConfig
from recsys.cpu import auto_threads, cpu_flags, cpu_has_native_bf16, use_bf16
from recsys.errors import ConfigError


def test_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert cpu_flags(info) == frozenset({"fpu", "sse2", "avx512f", "avx512_bf16"})
    assert cpu_flags(tmp_path / "missing") == frozenset()
    arm = tmp_path / "arm"
    arm.write_bytes(b"model name\t: \xff\xfe\nFeatures\t: fp asimd bf16\n")  # a stray byte, ARM's key
    assert cpu_flags(arm) == frozenset({"fp", "asimd", "bf16"}) and not cpu_has_native_bf16(cpu_flags(arm))


def test_the_cpu_is_read_in_one_place() -> None:
    """The trainer, the vLLM backend and the generation benchmark all ask recsys.cpu (torch-free
    at import, so the CLI starts without torch); genre_local keeps no reader of its own."""
    import subprocess
    import sys

    from genre_local.llm import compute_peak

    assert not {"cpu_flags", "native_bf16"} & set(vars(compute_peak))
    probe = "import sys, genre_local.llm.vllm_backend, recsys.cpu; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.parametrize("flags,native", [({"avx512_bf16"}, True), ({"amx_bf16", "avx2"}, True),
                                          ({"avx512f", "avx2"}, False), (set(), False)])
def test_native_bf16_needs_avx512_bf16_or_amx(flags, native) -> None:
    assert cpu_has_native_bf16(frozenset(flags)) is native


def test_use_bf16_auto_on_off() -> None:
    native, plain = frozenset({"avx512_bf16"}), frozenset({"avx2"})
    # auto on a CPU: off for the light models, native bf16 or not (DIN measured 2-2.6x slower: §2b)
    assert not use_bf16("auto", "cpu", native) and not use_bf16("auto", "cpu", plain)
    assert not use_bf16("auto", "cpu", native, model="din") and not use_bf16("auto", "cpu", native, model="dire")
    assert not use_bf16("auto", "cpu", model="nrms")  # this machine's own flags, whatever they are
    # ... on for PLMNR where the CPU multiplies bf16 natively (avx512_bf16 or amx_bf16), off elsewhere
    assert use_bf16("auto", "cpu", native, model="plmnr") and use_bf16("auto", "cpu", frozenset({"amx_bf16"}), model="plmnr")
    assert not use_bf16("auto", "cpu", plain, model="plmnr")
    assert not use_bf16("off", "cpu", native, model="plmnr") and use_bf16("on", "cpu", plain, model="din")
    assert use_bf16("auto", "cuda", plain) and use_bf16("auto", "cuda", native)  # always on CUDA
    assert use_bf16("on", "cpu", plain) and not use_bf16("off", "cuda", native)
    assert not use_bf16("auto", "mps", native)
    with pytest.raises(ValueError):
        use_bf16("yes", "cpu", native)


def test_bf16_key_is_checked_in_train_config() -> None:
    assert TrainConfig().bf16 == "auto"
    assert TrainConfig(bf16="off").bf16 == "off"
    with pytest.raises(ConfigError, match="bf16"):
        TrainConfig(bf16="true")
    with pytest.raises(ConfigError, match="bf16"):
        TrainConfig(bf16=True)


@pytest.mark.parametrize("cores,load,processes,expected", [
    (2, 1.0, 1, 2),    # idle apart from this process: every core
    (2, 3.5, 1, 1),    # a busy 2-core machine: one thread
    (2, 50.0, 1, 1),   # never below one
    (16, 5.0, 1, 12),  # a part of a bigger machine
    (16, 0.0, 4, 4),   # a fair share among this run's processes
    (1, 0.0, 1, 1),
])
def test_auto_threads(cores, load, processes, expected) -> None:
    assert auto_threads(cores, load, processes) == expected
