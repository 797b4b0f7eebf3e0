"""What the machine offers the trainer, read at run time: torch threads on a shared CPU and
native bfloat16.

Torch-free at import: only the functions that need torch import it.
"""

from __future__ import annotations

import os
from pathlib import Path

BF16_CHOICES = ("auto", "on", "off")
# CPU flags of native bfloat16 arithmetic (Linux /proc/cpuinfo names)
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first CPU's flags (empty when /proc/cpuinfo is unreadable, e.g. not Linux)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    return bool(NATIVE_BF16_FLAGS & (cpu_flags() if flags is None else flags))


# The models `auto` trains under bf16 autocast on a CPU with native bf16 (BENCHMARKS.md §2c'):
# PLMNR's tuned BERT layer (384-wide matmuls over every token of ~280 news a step) ran 1.39x
# faster under autocast on an AMX Xeon, and a pre-registered 20-seed test found its test AUC
# equivalent to float32's. The light models' small matmuls gained 1.0-1.15x there and DIN lost
# 2.6x (§2b), and DIRE was not measured: they stay float32 on CPUs.
BF16_AUTO_CPU_MODELS = frozenset({"plmnr"})


def use_bf16(choice: str, device_type: str, flags: frozenset[str] | None = None, model: str | None = None) -> bool:
    """Whether training runs under bfloat16 autocast: `on`/`off` force it; `auto` takes it on
    CUDA, and on a CPU with native bf16 (`flags`, default this machine's) for the models of
    BF16_AUTO_CPU_MODELS only.

    Not for the other models on CPUs, even with native bf16: on an AMD EPYC with avx512_bf16
    (BENCHMARKS.md §2b), autocast made DIN's steps about half as fast (the casts around every
    small matmul cost more than the bf16 arithmetic saves at these sizes) and NRMS's no faster;
    on an AMX Xeon DIN ran at 0.38x and the others at 1.0-1.15x."""
    if choice not in BF16_CHOICES:
        raise ValueError(f"bf16 must be one of {', '.join(BF16_CHOICES)}, got {choice!r}")
    if choice != "auto":
        return choice == "on"
    if device_type == "cuda":
        return True
    return device_type == "cpu" and model in BF16_AUTO_CPU_MODELS and cpu_has_native_bf16(flags)


def auto_threads(cores: int, load1: float, processes: int = 1) -> int:
    """Torch threads per process when the user left `threads` at 0.

    A fair share of the cores among this run's processes, cut to the cores the rest of the
    machine leaves free (1-minute load average, less about one for this process itself): on a
    busy 2-core machine 1 thread measured 3-5x faster than 2, because oversubscribed threads
    wait on each other at every parallel region."""
    share = max(1, cores // max(1, processes))
    free = cores - max(0.0, load1 - processes)
    return max(1, min(share, int(free)))


def machine_load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on this platform
        return 0.0
