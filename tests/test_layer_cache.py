"""The frozen-lower-layers hidden-state cache: sharding, memory-mapping, keys, atomicity, disk checks."""

from __future__ import annotations

import json
import os
from collections import namedtuple

import numpy as np
import pytest
import torch

from recsys.errors import RecsysError
from recsys import layer_cache as lc
from recsys.layer_cache import CacheSpec, TokenSegment, cache_bytes, layer_cache, text_fingerprint

HIDDEN = 4


def fake_states(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Deterministic 'hidden states': a function of token id and position only."""
    positions = torch.arange(ids.shape[1]).expand_as(ids)
    base = (ids * 0.01 + positions * 0.1).to(torch.float32)
    return torch.stack([base + k for k in range(HIDDEN)], dim=-1)


def segments(rows: int = 10, width: int = 7, used: int = 5, seed: int = 0) -> dict[str, TokenSegment]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 500, (rows, width), generator=generator)
    lengths = torch.randint(1, used + 1, (rows,), generator=generator)
    lengths[0] = used
    mask = torch.arange(width)[None] < lengths[:, None]
    return {"title": TokenSegment(ids * mask, mask)}


SPEC = CacheSpec("model-a", layer=2, hidden_size=HIDDEN)


def test_sharded_cache_gathers_the_computed_states(tmp_path) -> None:
    parts = segments(rows=10)
    cache = layer_cache(parts, SPEC, fake_states, tmp_path, "t", batch_size=3, shard_bytes=3 * 5 * HIDDEN * 2)
    manifest = json.loads((cache.folder / "manifest.json").read_text())
    assert manifest["segments"]["title"]["width"] == 5  # trailing all-padding columns are not stored
    assert [s["rows"] for s in manifest["segments"]["title"]["shards"]] == [3, 3, 3, 1]
    assert manifest["dtype"] == "float16" and manifest["layer"] == 2 and manifest["model"] == "model-a"
    rows = torch.tensor([9, 0, 4, 4, 7])
    got = cache.gather("title", rows)
    assert got.dtype == torch.float16 and got.shape == (5, 5, HIDDEN)
    seg = parts["title"]
    expected = fake_states(seg.ids[rows, :5], seg.mask[rows, :5]).to(torch.float16)
    assert torch.equal(got, expected)
    assert isinstance(np.load(cache.folder / "title-00000.bin", mmap_mode="r"), np.memmap)
    # a step reads only the columns its rows use, across shards
    assert torch.equal(cache.gather("title", rows, columns=2), expected[:, :2])
    assert torch.equal(cache.gather("title", rows, columns=9), expected)


def test_a_second_call_opens_the_cache_instead_of_computing(tmp_path) -> None:
    parts = segments()
    first = layer_cache(parts, SPEC, fake_states, tmp_path, "t")

    def refuse(ids, mask):
        raise AssertionError("recomputed although cached")

    second = layer_cache(parts, SPEC, refuse, tmp_path, "t")
    assert second.folder == first.folder
    assert torch.equal(second.gather("title", torch.arange(10)), first.gather("title", torch.arange(10)))


def test_other_text_model_or_layer_is_another_cache(tmp_path) -> None:
    base = layer_cache(segments(seed=0), SPEC, fake_states, tmp_path, "t").folder
    other_text = layer_cache(segments(seed=1), SPEC, fake_states, tmp_path, "t").folder
    other_model = layer_cache(segments(seed=0), CacheSpec("model-b", 2, HIDDEN), fake_states, tmp_path, "t").folder
    other_layer = layer_cache(segments(seed=0), CacheSpec("model-a", 3, HIDDEN), fake_states, tmp_path, "t").folder
    assert len({base, other_text, other_model, other_layer}) == 4


def test_padding_content_does_not_change_the_fingerprint() -> None:
    parts = segments()["title"]
    noisy = TokenSegment(torch.where(parts.mask, parts.ids, torch.full_like(parts.ids, 7)), parts.mask)
    assert text_fingerprint({"title": parts}) == text_fingerprint({"title": noisy})


def test_bfloat16_is_stored_as_raw_bits_and_read_back(tmp_path) -> None:
    parts = segments()
    spec = CacheSpec("model-a", 2, HIDDEN, "bfloat16")
    cache = layer_cache(parts, spec, fake_states, tmp_path, "t")
    got = cache.gather("title", torch.tensor([1, 2]))
    seg = parts["title"]
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, fake_states(seg.ids[[1, 2], :5], seg.mask[[1, 2], :5]).to(torch.bfloat16))
    assert np.load(cache.folder / "title-00000.bin", mmap_mode="r").dtype == np.uint16


def test_in_memory_cache_without_a_folder(tmp_path) -> None:
    cache = layer_cache(segments(), SPEC, fake_states, None, "t")
    assert cache.folder is None and cache.rows == 10
    assert not list(tmp_path.iterdir())


def test_not_enough_disk_is_refused_before_anything_is_written(tmp_path, monkeypatch) -> None:
    parts = segments()
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(lc.shutil, "disk_usage", lambda path: Usage(10**9, 10**9, 100))
    with pytest.raises(RecsysError) as raised:
        layer_cache(parts, SPEC, fake_states, tmp_path, "t")
    message = str(raised.value)
    assert "\n" not in message and str(tmp_path) in message
    assert lc.human_bytes(cache_bytes(SPEC, parts)) in message and "free" in message
    assert not any(tmp_path.iterdir())


def test_a_disk_that_fills_up_while_writing_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch) -> None:
    """The free-space check passed but the space is gone when a shard is created: a one-line
    error (not a SIGBUS at the first write into the sparse map), no cache and no staging left."""
    import errno

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lc.os, "posix_fallocate", full)
    with pytest.raises(RecsysError) as raised:
        layer_cache(segments(), SPEC, fake_states, tmp_path, "t", announce=lambda _: None)
    message = str(raised.value)
    assert "\n" not in message and "No space left on device" in message and "title-00000.bin" in message
    assert not any(tmp_path.iterdir())


def test_staging_left_by_a_killed_process_of_this_host_is_removed(tmp_path) -> None:
    """A SIGKILL skips the cleanup: the next build deletes that staging folder (its process is
    gone), but not a live process's nor another host's (a shared file system)."""
    import socket
    import subprocess
    import sys

    parts = segments()
    folder = lc.cache_folder(tmp_path, "t", SPEC, lc.text_fingerprint(parts))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    dead = tmp_path / f".{folder.name}.{host}.{int(gone.stdout)}.tmp"
    live = tmp_path / f".{folder.name}.{host}.{os.getppid()}.tmp"
    other_host = tmp_path / f".{folder.name}.elsewhere-{host}.{int(gone.stdout)}.tmp"
    for staging in (dead, live, other_host):
        (staging / "title-00000.bin").parent.mkdir()
        (staging / "title-00000.bin").write_bytes(b"half")
    layer_cache(parts, SPEC, fake_states, tmp_path, "t", announce=lambda _: None)
    assert not dead.exists() and live.exists() and other_host.exists()
    assert (folder / "manifest.json").is_file()


def test_the_size_is_announced_before_writing(tmp_path) -> None:
    said = []
    layer_cache(segments(), SPEC, fake_states, tmp_path, "t", announce=said.append)
    assert len(said) == 1 and "400 B" in said[0] and "float16" in said[0]  # 10 rows x 5 x 4 x 2 bytes


def test_a_kill_while_computing_leaves_no_cache(tmp_path) -> None:
    calls = []

    def dies(ids, mask):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return fake_states(ids, mask)

    with pytest.raises(KeyboardInterrupt):
        layer_cache(segments(), SPEC, dies, tmp_path, "t", batch_size=3)
    assert list(tmp_path.iterdir()) == []
    # and the next run computes it in full
    cache = layer_cache(segments(), SPEC, fake_states, tmp_path, "t", batch_size=3)
    assert cache.gather("title", torch.arange(10)).shape == (10, 5, HIDDEN)


def test_a_manifest_that_does_not_match_is_a_user_error(tmp_path) -> None:
    cache = layer_cache(segments(), SPEC, fake_states, tmp_path, "t")
    manifest = json.loads((cache.folder / "manifest.json").read_text())
    manifest["layer"] = 9
    (cache.folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RecsysError, match="delete the folder"):
        layer_cache(segments(), SPEC, fake_states, tmp_path, "t")


def test_rows_outside_the_catalogue_are_refused(tmp_path) -> None:
    cache = layer_cache(segments(), SPEC, fake_states, tmp_path, "t")
    with pytest.raises(IndexError):
        cache.gather("title", torch.tensor([10]))


def test_segments_must_agree_on_rows() -> None:
    parts = segments(rows=4) | {"abstract": segments(rows=5)["title"]}
    with pytest.raises(ValueError, match="rows"):
        layer_cache(parts, SPEC, fake_states, None, "t")


def test_unknown_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="float16"):
        CacheSpec("m", 1, 4, "float32")


def test_a_concurrent_writer_that_finished_first_wins(tmp_path, monkeypatch) -> None:
    parts = segments()
    real_compute = lc._compute

    def compute_then_lose_the_race(segs, spec, text, encode, folder, batch_size, shard_bytes):
        result = real_compute(segs, spec, text, encode, folder, batch_size, shard_bytes)
        final = lc.cache_folder(tmp_path, "t", spec, text)
        # another process renames its complete copy into place meanwhile
        os.rename(folder, final)
        folder.mkdir()
        return result

    monkeypatch.setattr(lc, "_compute", compute_then_lose_the_race)
    cache = layer_cache(parts, SPEC, fake_states, tmp_path, "t")
    assert (cache.folder / "manifest.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [cache.folder.name]
