"""The per-user cache of the prepared embedded model (genre_local/llm/models.py): where it lives,
what keys it, and that a store's folder is filled from a complete entry only. The conversion
itself runs once in the suite (tests/test_quiet.py, which also checks that it fills the cache)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genre_local.llm import models
from genre_local.llm.models import (
    CACHE_MARKER, EMBEDDED_FOLDER, MODEL_CACHE_ENV, cached_files, model_cache_key, model_cache_root, prepare_embedded,
    publish_to_cache,
)


def test_cache_root_follows_the_env_then_xdg_then_home(tmp_path: Path):
    assert model_cache_root({MODEL_CACHE_ENV: str(tmp_path / "c")}) == tmp_path / "c"
    assert model_cache_root({MODEL_CACHE_ENV: "  "}) is None  # set empty: off
    assert model_cache_root({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "genre-local" / "prepared-models"
    assert model_cache_root({}) == Path.home() / ".cache" / "genre-local" / "prepared-models"


def test_cache_key_changes_with_the_gguf_and_the_converter():
    key = model_cache_key("ab" * 32, "5.0.0")
    assert key.startswith(f"{EMBEDDED_FOLDER}-{'ab' * 8}-")
    assert model_cache_key("cd" * 32, "5.0.0") != key
    assert model_cache_key("ab" * 32, "5.0.1") != key
    assert model_cache_key("ab" * 32, "5.0.0") == key


def _folder(path: Path, weights: bytes = b"w" * 64) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_a_published_entry_is_complete_and_a_damaged_one_is_not(tmp_path: Path):
    entry = tmp_path / "cache" / "k"
    assert publish_to_cache(_folder(tmp_path / "prepared"), entry)
    assert cached_files(entry) == {"config.json": (entry / "config.json").stat().st_size, "model.safetensors": 64}
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]  # no staging left behind
    (entry / "model.safetensors").write_bytes(b"w" * 10)  # truncated since
    assert cached_files(entry) is None
    assert publish_to_cache(tmp_path / "prepared", entry)  # a damaged entry is replaced
    assert cached_files(entry) is not None
    (tmp_path / "prepared" / "model.safetensors").write_bytes(b"v" * 32)
    assert publish_to_cache(tmp_path / "prepared", entry)  # a complete one stays ...
    assert (entry / "model.safetensors").read_bytes() == b"w" * 64
    assert publish_to_cache(tmp_path / "prepared", entry, replace=True)  # ... unless replaced (--force)
    assert (entry / "model.safetensors").read_bytes() == b"v" * 32
    (entry / CACHE_MARKER).unlink()  # the marker is written last: without it the entry is partial
    assert cached_files(entry) is None
    assert cached_files(tmp_path / "missing") is None


def test_an_unwritable_cache_is_a_note_not_an_error(tmp_path: Path, capsys):
    (tmp_path / "file").write_text("")
    assert not publish_to_cache(_folder(tmp_path / "prepared"), tmp_path / "file" / "k")
    assert MODEL_CACHE_ENV in capsys.readouterr().err


@pytest.fixture
def fake_gguf(tmp_path: Path, monkeypatch) -> Path:
    """A stand-in GGUF: converting it would fail, so a prepared folder can only come from the cache."""
    gguf = tmp_path / "pkg" / "model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"not a real gguf")
    monkeypatch.setattr(models, "embedded_gguf_path", lambda: gguf)
    return gguf


def _entry_for(gguf: Path, root: Path) -> Path:
    import transformers

    return root / model_cache_key(models.file_sha256(gguf), transformers.__version__)


def test_a_store_is_filled_from_the_cache_without_converting(tmp_path: Path, fake_gguf: Path, capsys):
    root = tmp_path / "cache"
    publish_to_cache(_folder(tmp_path / "prepared", b"cached weights"), _entry_for(fake_gguf, root))
    target = tmp_path / "store" / "models" / EMBEDDED_FOLDER
    assert prepare_embedded(target, environ={MODEL_CACHE_ENV: str(root)}) == target
    assert (target / "model.safetensors").read_bytes() == b"cached weights"
    assert not (target / CACHE_MARKER).exists()
    assert "prepared before" in capsys.readouterr().err


def test_another_gguf_force_or_a_cache_switched_off_converts(tmp_path: Path, fake_gguf: Path, monkeypatch):
    root = tmp_path / "cache"
    publish_to_cache(_folder(tmp_path / "prepared"), _entry_for(fake_gguf, root))
    converted = []
    monkeypatch.setattr(models, "_convert_embedded", lambda gguf, target: converted.append(target) or _folder(target))
    target = tmp_path / "store" / EMBEDDED_FOLDER
    prepare_embedded(target, force=True, environ={MODEL_CACHE_ENV: str(root)})
    prepare_embedded(tmp_path / "off" / EMBEDDED_FOLDER, environ={MODEL_CACHE_ENV: ""})
    fake_gguf.write_bytes(b"another gguf")  # another package version: another key
    prepare_embedded(tmp_path / "other" / EMBEDDED_FOLDER, environ={MODEL_CACHE_ENV: str(root)})
    assert converted == [target, tmp_path / "off" / EMBEDDED_FOLDER, tmp_path / "other" / EMBEDDED_FOLDER]
    assert cached_files(_entry_for(fake_gguf, root)) is not None  # the new conversion was cached
