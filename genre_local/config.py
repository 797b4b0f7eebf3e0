"""Typed configuration: built-in defaults < genre.toml < command-line flags.

Each section of genre.toml maps to one frozen dataclass below. Commands receive the loaded
`GenreConfig` and apply their flags with `with_overrides`, so no stage passes raw dicts around.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from genre_local.errors import UserError
from recsys.config import TrainConfig  # [train]: recsys owns its fields and checks
from recsys.errors import ConfigError

DEFAULT_CONFIG_FILE = Path("genre.toml")


@dataclass(frozen=True)
class PathsConfig:
    # Folders relative to the store file's folder unless absolute.
    models_dir: str = "models"
    cache_dir: str = ".genre-cache"
    reports_dir: str = "reports"


@dataclass(frozen=True)
class SynthConfig:
    news: int = 1500
    users: int = 600
    seed: int = 7


@dataclass(frozen=True)
class GenerateConfig:
    model: str = "llama"
    backend: str = "auto"  # auto | vllm | transformers
    dtype: str = "float32"
    max_model_len: int = 2048
    gpu_memory_utilization: float = 0.5
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    retries: int = 2
    per_user: int = 2
    rounds: int = 1
    batch_size: int = 256
    history_items: int = 20
    price_per_hour: float = 0.0
    # vLLM only: skip torch.compile (faster engine start, slower decode); CPU micro-batch for
    # the transformers backend.
    enforce_eager: bool | None = None  # None: eager on CPU (compiling costs minutes at every start there)
    hf_micro_batch: int = 16


@dataclass(frozen=True)
class GenreConfig:
    paths: PathsConfig = field(default_factory=PathsConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Extra --model aliases for generation: name -> local HF folder.
    models: dict[str, str] = field(default_factory=dict)
    source: Path | None = None


SectionT = TypeVar("SectionT")


def with_overrides(section: SectionT, **flags: Any) -> SectionT:
    """A copy of a config section with every flag that is not None applied."""
    given = {k: v for k, v in flags.items() if v is not None}
    return dataclasses.replace(section, **given)  # type: ignore[type-var]


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    # "bool | None" fields: None is the built-in default ("decide automatically"); a file gives a bool.
    base = annotation.removesuffix(" | None") if isinstance(annotation, str) else annotation
    expected = {"int": int, "float": float, "str": str, "bool": bool}.get(base, base)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected in (int, float, str, bool):
        if isinstance(value, bool) and expected is not bool:
            raise UserError(f"{where}: expected {expected.__name__}, got {value!r}")
        if not isinstance(value, expected):
            raise UserError(f"{where}: expected {expected.__name__}, got {value!r}")
    return value


def _build_section(cls: type[SectionT], table: Any, where: str) -> SectionT:
    if not isinstance(table, dict):
        raise UserError(f"{where}: expected a table like [{where.rsplit(' ', 1)[-1]}]")
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {}
    for key, value in table.items():
        if key not in known:
            raise UserError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(known))})")
        values[key] = _coerce(value, known[key].type, f"{where}.{key}")
    try:
        return cls(**values)
    except ConfigError as exc:  # [train] validates itself (recsys.config) and names the key
        raise UserError(f"{where}.{exc.key}: {exc.problem}") from exc


def load_config(path: Path | None = None) -> GenreConfig:
    """Read genre.toml (or `path`, or $GENRE_CONFIG) over the defaults; missing default file is fine."""
    explicit = path is not None or "GENRE_CONFIG" in os.environ
    if path is None:
        path = Path(os.environ.get("GENRE_CONFIG", DEFAULT_CONFIG_FILE))
    if not path.exists():
        if explicit:
            raise UserError(f"config file {path} does not exist; create it or drop --config")
        return GenreConfig()
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML ({exc}); fix the file") from exc
    sections: dict[str, Any] = {}
    section_types = {"paths": PathsConfig, "synth": SynthConfig, "generate": GenerateConfig, "train": TrainConfig}
    for key, value in data.items():
        if key in section_types:
            sections[key] = _build_section(section_types[key], value, f"{path} [{key}]")
        elif key == "models":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise UserError(f"{path} [models]: expected alias = \"/path/to/hf/folder\" lines")
            sections["models"] = dict(value)
        else:
            raise UserError(
                f"{path}: unknown section [{key}] (known: {', '.join([*section_types, 'models'])})"
            )
    return GenreConfig(**sections, source=path)


def resolve_relative(store_path: Path, folder: str) -> Path:
    """Folders in [paths] live next to the store file unless given absolute."""
    candidate = Path(folder)
    return candidate if candidate.is_absolute() else store_path.resolve().parent / candidate

