"""Typed configuration: built-in defaults < genre.toml < command-line flags.

Each section of genre.toml maps to one frozen dataclass below. Commands receive the loaded
`GenreConfig` and apply their flags with `with_overrides`, so no stage passes raw dicts around.
Every section checks its own values in `__post_init__`: the loader, `with_overrides` (flags)
and library callers building a section directly all get the same checks, and every count a
user gives is bounded so one typo cannot ask for terabytes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from genre_local.errors import UserError
from recsys.config import TrainConfig  # [train]: recsys owns its fields and checks
from recsys.errors import ConfigError

DEFAULT_CONFIG_FILE = Path("genre.toml")

# TOML integers are 64-bit signed; tomllib accepts any size, so the loader checks.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# numpy and vLLM seed their generators with 32-bit unsigned integers.
SEED32_MAX = 2**32 - 1

GENERATE_BACKENDS: tuple[str, ...] = ("auto", "vllm", "transformers")
# The prompt sets in prompts/<set>/ (genre_local/llm/prompt_sets.py; a test keeps the two equal).
GENERATE_PROMPT_SETS: tuple[str, ...] = ("compact", "paper")
GENERATE_DTYPES: tuple[str, ...] = ("float32", "float", "bfloat16", "float16", "half", "auto")
GENERATE_ENGINES: tuple[str, ...] = ("local", "ray")
EMBEDDED_MODEL_ALIAS = "llama"  # the embedded SmolLM2 (genre_local.llm.models.EMBEDDED_ALIAS)

# Bounds of every count a user gives. The synthetic upper bounds are MIND-large's size
# (161k news, 1M users); the generation ones are far above any useful value.
SYNTH_NEWS_RANGE = (150, 200_000)  # below 150 a day's candidate pool is too small for 20-item impressions
SYNTH_USERS_RANGE = (10, 1_000_000)
GENERATE_LIMIT_RANGE = (1, 1_000_000_000)


class ConfigValueError(UserError):
    """One config value outside what its key allows.

    Raised by the sections' checks; the loader names the file and `with_overrides` the flag,
    so the one line says where the value came from.
    """

    def __init__(self, section: str, key: str, value: Any, rule: str):
        # `rule` starts with its own separator (": must be ..." or " is not known; ...").
        self.section, self.key, self.value, self.rule = section, key, value, rule
        super().__init__(f"[{section}] {key} = {value!r}{rule}")

    def as_flag(self) -> UserError:
        shown = repr(self.value) if isinstance(self.value, str) else str(self.value)
        return UserError(f"--{self.key.replace('_', '-')} {shown}{self.rule}")

    def in_file(self, path: Path) -> UserError:
        return UserError(f"{path} [{self.section}] {self.key} = {self.value!r}{self.rule}; fix the file")


def _int_in(section: str, key: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigValueError(section, key, value, f": must be between {low} and {high}")


def _float_in(section: str, key: str, value: float, low: float, high: float, low_open: bool = False) -> None:
    above = value > low if low_open else value >= low
    if not (math.isfinite(value) and above and value <= high):
        floor = f"{'above' if low_open else 'at least'} {low:g}"
        rule = f"must be a number {floor}" if high == math.inf else f"must be a number {floor} and at most {high:g}"
        raise ConfigValueError(section, key, value, f": {rule}")


def _one_of(section: str, key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigValueError(section, key, value, f" is not known; use one of {', '.join(allowed)}")


def _path_text(section: str, key: str, value: str) -> None:
    if not value.strip() or "\0" in value:
        raise ConfigValueError(section, key, value, ": must be a folder name or path (not empty, no NUL character)")


@dataclass(frozen=True)
class PathsConfig:
    # Folders relative to the store file's folder unless absolute.
    models_dir: str = "models"
    cache_dir: str = ".genre-cache"
    reports_dir: str = "reports"

    def __post_init__(self) -> None:
        for key in ("models_dir", "cache_dir", "reports_dir"):
            _path_text("paths", key, getattr(self, key))


@dataclass(frozen=True)
class SynthConfig:
    news: int = 1500
    users: int = 600
    seed: int = 7

    def __post_init__(self) -> None:
        _int_in("synth", "news", self.news, *SYNTH_NEWS_RANGE)
        _int_in("synth", "users", self.users, *SYNTH_USERS_RANGE)
        _int_in("synth", "seed", self.seed, 0, INT64_MAX)


@dataclass(frozen=True)
class GenerateConfig:
    model: str = "llama"
    backend: str = "auto"  # auto | vllm | transformers
    dtype: str = "auto"  # auto: bfloat16 on CUDA and native-bf16 CPUs (vLLM), else float32 (llm/engine_sizing.py)
    max_model_len: int = 2048
    # Unset: 0.9 of a GPU; on CPU a KV cache sized from the model and max_num_seqs (engine_sizing.py).
    # Set: vLLM's meaning (on CPU: the share of all RAM the engine reserves).
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int = 1  # vLLM: GPUs one model is split across
    max_num_seqs: int | None = None  # vLLM: sequences decoded together (unset: vLLM's default on GPU, 32 on CPU)
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    retries: int = 2
    per_user: int = 2
    rounds: int = 1
    batch_size: int = 256
    history_items: int = 20
    # compact | paper; unset: compact for the embedded model, paper for any other (prompt_sets.py)
    prompts: str | None = None
    price_per_hour: float = 0.0
    # vLLM only: skip torch.compile (faster engine start, slower decode); CPU micro-batch for
    # the transformers backend.
    enforce_eager: bool | None = None  # None: eager on CPU (compiling costs minutes at every start there)
    hf_micro_batch: int = 16
    # Scaling out (pipeline/scale.py; flags --gpus, --engine, --ray-address override them):
    gpus: int = 1  # engine processes, one per GPU (CPU worker processes without GPUs)
    engine: str = "local"  # local | ray (a Ray Data pipeline)
    ray_address: str | None = None  # engine = "ray": a running cluster (HOST:PORT); unset starts Ray here

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ConfigValueError("generate", "model", self.model, ": must name an alias or a model folder")
        _one_of("generate", "backend", self.backend, GENERATE_BACKENDS)
        _one_of("generate", "dtype", self.dtype, GENERATE_DTYPES)
        _int_in("generate", "max_model_len", self.max_model_len, 16, 1_048_576)
        if self.gpu_memory_utilization is not None:
            _float_in("generate", "gpu_memory_utilization", self.gpu_memory_utilization, 0.0, 1.0, low_open=True)
        _int_in("generate", "tensor_parallel_size", self.tensor_parallel_size, 1, 1024)
        if self.max_num_seqs is not None:
            _int_in("generate", "max_num_seqs", self.max_num_seqs, 1, 65_536)
        _float_in("generate", "temperature", self.temperature, 0.0, math.inf)
        _float_in("generate", "top_p", self.top_p, 0.0, 1.0, low_open=True)
        _int_in("generate", "seed", self.seed, 0, SEED32_MAX)
        _int_in("generate", "retries", self.retries, 0, 20)
        _int_in("generate", "per_user", self.per_user, 1, 10)
        _int_in("generate", "rounds", self.rounds, 1, 100)
        _int_in("generate", "batch_size", self.batch_size, 1, 65_536)
        _int_in("generate", "history_items", self.history_items, 1, 500)
        if self.prompts is not None:
            _one_of("generate", "prompts", self.prompts, GENERATE_PROMPT_SETS)
        _float_in("generate", "price_per_hour", self.price_per_hour, 0.0, math.inf)
        _int_in("generate", "hf_micro_batch", self.hf_micro_batch, 1, 4096)
        _int_in("generate", "gpus", self.gpus, 1, 1024)
        _one_of("generate", "engine", self.engine, GENERATE_ENGINES)
        if self.ray_address is not None and (not self.ray_address.strip() or any(c.isspace() for c in self.ray_address)):
            raise ConfigValueError("generate", "ray_address", self.ray_address, ": must be HOST:PORT (or ray://HOST:PORT), without spaces")
        if self.ray_address is not None and self.engine != "ray":
            raise ConfigValueError("generate", "ray_address", self.ray_address,
                                   ": applies to engine = 'ray' only; set engine = 'ray' or remove ray_address")


def check_generate_limit(limit: int | None) -> None:
    """`generate --limit N`: a run option, not a config key, bounded like the keys."""
    if limit is not None:
        try:
            _int_in("generate", "limit", limit, *GENERATE_LIMIT_RANGE)
        except ConfigValueError as exc:
            raise exc.as_flag() from None


def check_model_aliases(models: dict[str, str]) -> None:
    """[models]: alias = "/path/to/hf/folder"; the embedded alias cannot be redefined."""
    for alias, folder in models.items():
        if not alias.strip():
            raise ConfigValueError("models", alias, folder, ": an alias needs a name")
        if alias == EMBEDDED_MODEL_ALIAS:
            raise ConfigValueError(
                "models", alias, folder, f": '{EMBEDDED_MODEL_ALIAS}' is the embedded model; choose another alias"
            )
        if not isinstance(folder, str):
            raise ConfigValueError("models", alias, folder, ': expected alias = "/path/to/hf/folder"')
        _path_text("models", alias, folder)


@dataclass(frozen=True)
class GenreConfig:
    paths: PathsConfig = field(default_factory=PathsConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Extra --model aliases for generation: name -> local HF folder.
    models: dict[str, str] = field(default_factory=dict)
    source: Path | None = None

    def __post_init__(self) -> None:
        check_model_aliases(self.models)


SectionT = TypeVar("SectionT")


def with_overrides(section: SectionT, **flags: Any) -> SectionT:
    """A copy of a config section with every flag that is not None applied (and checked).

    A value a flag gave is named as that flag (`--per-user 0: ...`).
    """
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return dataclasses.replace(section, **given)  # type: ignore[type-var]
    except ConfigValueError as exc:
        if exc.key in given:
            raise exc.as_flag() from None
        raise
    except ConfigError:  # [train] (recsys.config): the caller names its own flag (commands/train.py)
        raise
    except ValueError as exc:
        # A section that validates with its own ValueError (a library's config class) is
        # still a user mistake here, not an internal error.
        raise UserError(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from None


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    # "bool | None" fields: None is the built-in default ("decide automatically"); a file gives a bool.
    base = annotation.removesuffix(" | None") if isinstance(annotation, str) else annotation
    expected = {"int": int, "float": float, "str": str, "bool": bool}.get(base, base)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected in (int, float, str, bool):
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            raise UserError(f"{where}: expected {expected.__name__}, got {value!r}; fix the file")
    if expected is int and not INT64_MIN <= value <= INT64_MAX:
        raise UserError(f"{where} = {value}: out of range (TOML integers are 64-bit); fix the file")
    return value


def _build_section(cls: type[SectionT], table: Any, where: str, path: Path) -> SectionT:
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
    except ConfigValueError as exc:
        raise exc.in_file(path) from None
    except ConfigError as exc:  # [train] validates itself (recsys.config) and names the key
        raise UserError(f"{where}.{exc.key}: {exc.problem}; fix the file") from None
    except ValueError as exc:  # a library section's own check (see with_overrides)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{where}: {first}; fix the file") from None


def _read_config_text(path: Path) -> str:
    if path.is_dir():
        raise UserError(f"config file {path} is a folder; pass the genre.toml file itself with --config or GENRE_CONFIG")
    try:
        return path.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not valid TOML (not UTF-8 at byte {exc.start}); fix the file") from None
    except OSError as exc:
        raise UserError(f"config file {path} cannot be read ({exc.strerror or exc}); fix its permissions or pass another --config") from None


def load_config(path: Path | None = None) -> GenreConfig:
    """Read genre.toml (or `path`, or $GENRE_CONFIG) over the defaults; missing default file is fine."""
    path_given = path is not None
    explicit = path_given or "GENRE_CONFIG" in os.environ
    if path is None:
        path = Path(os.environ.get("GENRE_CONFIG", DEFAULT_CONFIG_FILE))
    if not path.exists():
        if explicit:
            given = "--config" if path_given else "GENRE_CONFIG"
            raise UserError(f"config file {path} does not exist; create it or drop {given}")
        return GenreConfig()
    try:
        data = tomllib.loads(_read_config_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc}); fix the file") from exc
    sections: dict[str, Any] = {}
    section_types = {"paths": PathsConfig, "synth": SynthConfig, "generate": GenerateConfig, "train": TrainConfig}
    for key, value in data.items():
        if key in section_types:
            sections[key] = _build_section(section_types[key], value, f"{path} [{key}]", path)
        elif key == "models":
            if not isinstance(value, dict):
                raise UserError(f"{path} [models]: expected a table of alias = \"/path/to/hf/folder\" lines; fix the file")
            for alias, folder in value.items():
                if not isinstance(folder, str):
                    raise UserError(f"{path} [models].{alias}: expected a folder path in quotes "
                                    f"({alias} = \"/path/to/hf/folder\"), got {folder!r}; fix the file")
            sections["models"] = dict(value)
        else:
            raise UserError(
                f"{path}: unknown section [{key}] (known: {', '.join([*section_types, 'models'])})"
            )
    try:
        return GenreConfig(**sections, source=path)
    except ConfigValueError as exc:
        raise exc.in_file(path) from None


def resolve_relative(store_path: Path, folder: str) -> Path:
    """Folders in [paths] live next to the store file unless given absolute."""
    candidate = Path(folder)
    return candidate if candidate.is_absolute() else store_path.resolve().parent / candidate
