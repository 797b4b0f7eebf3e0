"""PLMNR's token-state table: rows packed to their pooled positions, sharded, scratch on disk."""

from __future__ import annotations

import shutil
from collections import namedtuple

import pytest
import torch

from recsys.errors import RecsysError
from recsys.state_table import TokenStateTable, packed_positions


def test_packed_positions_put_each_rows_true_columns_first_in_order() -> None:
    mask = torch.tensor([[False, True, False, True], [True, True, False, False], [False, False, False, False]])
    assert packed_positions(mask).tolist() == [[1, 3, 0, 2], [0, 1, 2, 3], [0, 1, 2, 3]]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("where", ["memory", "disk", "device"])
def test_rows_come_back_packed_across_shards(tmp_path, dtype, where) -> None:
    """Host shards in memory or memory-mapped, or one tensor on a device (an accelerator's path;
    the CPU stands in for it here)."""
    torch.manual_seed(0)
    rows, width, hidden = 11, 6, 8
    mask = torch.rand(rows, width) < 0.6
    mask[4] = False
    mask[4, 5] = True  # one position, in the last column
    capacity = mask.sum(dim=1)
    table = TokenStateTable(capacity, hidden, dtype, tmp_path if where == "disk" else None,
                            device=torch.device("cpu") if where == "device" else None,
                            shard_bytes=7 * hidden * 2, announce=lambda _: None)
    # back to back: each row takes its own positions only, and rows span the 7-position shards
    assert table.nbytes == int(capacity.sum()) * hidden * 2 < rows * int(capacity.max()) * hidden * 2
    states = torch.randn(rows, width, hidden)
    order = torch.randperm(rows)
    for chunk in torch.split(order, 4):  # written in groups, out of row order, like a refresh
        table.write(chunk, states[chunk], mask[chunk])
    picked = torch.tensor([9, 4, 0, 4, 10])
    got, got_mask = table.gather(picked)
    assert got.dtype == getattr(torch, dtype)
    assert got_mask.tolist() == [[i < int(capacity[r]) for i in range(got.shape[1])] for r in picked.tolist()]
    assert got.shape[1] == int(capacity[picked].max())
    for k, r in enumerate(picked.tolist()):
        want = states[r][mask[r]].to(getattr(torch, dtype))
        assert torch.equal(got[k, : len(want)], want)
        assert not got[k, len(want):].any()  # padding is zero, never an older write's values
    if where == "disk":
        assert not list(tmp_path.iterdir())  # the shards' files are unlinked as soon as they are mapped


@pytest.mark.parametrize("device", [None, torch.device("cpu")])
def test_a_rewrite_replaces_a_rows_states_and_its_count(device) -> None:
    table = TokenStateTable(torch.tensor([3, 3]), 2, "float16", None, device=device)
    table.write(torch.tensor([0, 1]), torch.ones(2, 3, 2), torch.ones(2, 3, dtype=torch.bool))
    table.write(torch.tensor([1]), torch.full((1, 3, 2), 2.0), torch.tensor([[True, False, False]]))
    states, mask = table.gather(torch.tensor([1]))
    assert mask.tolist() == [[True]] and states.tolist() == [[[2.0, 2.0]]]
    states, mask = table.gather(torch.tensor([1, 0]))
    assert mask.tolist() == [[True, False, False], [True, True, True]]
    assert states[0, 1:].abs().sum() == 0  # row 1's old positions 1..2 are gone


def test_misuse_is_refused() -> None:
    table = TokenStateTable(torch.tensor([2, 2, 2]), 4, "float16", None)
    with pytest.raises(RuntimeError, match="never written"):
        table.gather(torch.tensor([1]))
    with pytest.raises(ValueError, match="3 positions but the state table holds 2"):
        table.write(torch.tensor([0]), torch.zeros(1, 3, 4), torch.ones(1, 3, dtype=torch.bool))
    table.write(torch.tensor([0, 1, 2]), torch.zeros(3, 2, 4), torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(IndexError, match="outside 0..2"):
        table.gather(torch.tensor([3]))
    with pytest.raises(ValueError, match="dtype 'float32'"):
        TokenStateTable(torch.tensor([2]), 4, "float32", None)


def test_the_size_is_announced_and_a_full_disk_refused_before_anything_is_written(tmp_path, monkeypatch) -> None:
    said = []
    TokenStateTable(torch.tensor([5] * 100), 384, "float16", tmp_path, announce=said.append, label="plmnr-minilm")
    assert len(said) == 1 and "375.0 KiB" in said[0] and "float16" in said[0] and str(tmp_path) in said[0]
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(RecsysError) as error:
        TokenStateTable(torch.tensor([5] * 100), 384, "float16", tmp_path / "sub", announce=said.append)
    message = str(error.value)
    assert "\n" not in message and "375.0 KiB" in message and "1000 B free" in message and "cached" in message
    assert len(said) == 1 and not list((tmp_path / "sub").iterdir())


def test_a_disk_that_fills_up_is_refused_when_the_space_is_reserved(tmp_path, monkeypatch) -> None:
    """The free-space check passes, but the space is gone by the time a shard is reserved
    (another process wrote meanwhile): a clear error, not a SIGBUS at the first write."""
    import errno
    import os

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(RecsysError) as error:
        TokenStateTable(torch.tensor([5] * 10), 8, "float16", tmp_path, announce=lambda _: None)
    assert "No space left on device" in str(error.value) and "\n" not in str(error.value)
    assert not list(tmp_path.iterdir())
