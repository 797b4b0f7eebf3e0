"""The set-up's lock files must cover what the project declares, or a new dependency would be
installed unpinned (scripts/lock.sh regenerates them)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _locked(flavour: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints" / f"{flavour}.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_normal(name)] = version
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [d for deps in project["optional-dependencies"].values() for d in deps]
    return [_normal(re.split(r"[<>=!~\[;\s]", spec, maxsplit=1)[0]) for spec in specs]


def _vllm_spec(flavour: str) -> tuple[str, str]:
    text = (ROOT / "scripts" / "versions.sh").read_text()
    spec = re.search(rf'VLLM_{flavour.upper()}_SPEC="([^"]+)"', text).group(1)
    name, _, version = spec.partition("==")
    return _normal(name), version


@pytest.mark.parametrize("flavour", ["cpu", "gpu"])
def test_every_declared_dependency_is_locked(flavour: str) -> None:
    locked = _locked(flavour)
    missing = [name for name in _declared() if name not in locked]
    assert not missing, f"constraints/{flavour}.txt lacks {missing}: run scripts/lock.sh"


@pytest.mark.parametrize("flavour", ["cpu", "gpu"])
def test_vllm_pin_matches_lock(flavour: str) -> None:
    name, version = _vllm_spec(flavour)
    assert _locked(flavour).get(name) == version, f"scripts/versions.sh pins {name}=={version}: run scripts/lock.sh"


def test_gpu_lock_has_no_local_cpu_builds() -> None:
    assert not [v for v in _locked("gpu").values() if "+" in v]
