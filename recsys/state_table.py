"""PLMNR's token-state history table (plmnr_history "states").

For every catalogue news it holds the tuned top layer's output token states, computed at an
epoch start from the weights of that moment, so a training step can pool a history-only news
(with dropout, through the attention pooling and the projection, both with gradient) without
running the tuned layer on it. A row keeps only the positions the pooling reads (real text
tokens, then category/subcategory/image), in order (attention pooling does not depend on it),
and the rows lie back to back: row i takes exactly the positions it can have (its capacity),
not the longest row's (half the size on the synthetic MIND-small: 596 MiB, not 1.2 GiB). A batch
reads its rows into a padded [rows, its longest row, hidden] block.

It is rewritten at every epoch start, so it is scratch, not a cache: in memory, or (with a
folder) in memory-mapped shards of the layer cache's size whose files are unlinked as soon as
they are mapped, so nothing is left on disk when the process ends, killed or not. On an
accelerator with room for it the table lives in that device's memory instead. 16-bit like the
layer cache: (mean positions per news) x hidden x 2 bytes per news.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from recsys.errors import RecsysError
from recsys.layer_cache import DISK_MARGIN, SHARD_BYTES, STORAGE_DTYPES, human_bytes


def _announce(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def packed_positions(mask: torch.Tensor) -> torch.Tensor:
    """[N, L] bool -> [N, L] column indices, each row's True columns first (in order), then its
    False ones: gathering with it packs a row's real positions to the left."""
    return torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices


class TokenStateTable:
    """Each catalogue row's states [its positions, hidden], stored back to back, and their
    position counts; written and read by catalogue row."""

    def __init__(self, capacity: torch.Tensor, hidden: int, dtype: str, folder: Path | None,
                 device: torch.device | None = None, label: str = "plmnr",
                 shard_bytes: int = SHARD_BYTES, announce: Callable[[str], None] = _announce) -> None:
        """`capacity` [rows]: the most positions each row will ever hold (its text's real tokens
        and its category tokens). `device`: keep the whole table there as one tensor (an
        accelerator with room for it); None: numpy shards of positions in host memory, or
        memory-mapped in `folder` (a row may span two shards)."""
        if dtype not in STORAGE_DTYPES:
            raise ValueError(f"state table dtype {dtype!r} is not one of {', '.join(STORAGE_DTYPES)}")
        self.rows = int(capacity.numel())
        self.capacity = capacity.reshape(-1).to(torch.int64).clamp(min=0).cpu()
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.int64), self.capacity.cumsum(0)])  # row i: offsets[i]..
        self.positions = max(int(self.offsets[-1]), 1)
        self.hidden, self.dtype = hidden, dtype
        self.counts = torch.zeros(self.rows, dtype=torch.int64)  # positions written per row (0: none yet)
        numpy_dtype, torch_dtype = STORAGE_DTYPES[dtype]
        position_bytes = hidden * np.dtype(numpy_dtype).itemsize
        self.nbytes = self.positions * position_bytes
        self._device_states: torch.Tensor | None = None
        self._shards: list[np.ndarray] = []
        if device is not None:
            self._device_states = torch.zeros(self.positions, hidden, dtype=torch_dtype, device=device)
            return
        self._per_shard = max(1, shard_bytes // position_bytes)
        if folder is not None:
            folder = Path(folder)
            folder.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(folder).free
            if self.nbytes * DISK_MARGIN > free:
                raise RecsysError(
                    f"the {label} token-state table needs {human_bytes(self.nbytes)} but {folder} has only "
                    f"{human_bytes(free)} free; free disk space, give the layer cache another folder, "
                    "or train with plmnr_history cached"
                )
            announce(f"{label}: token-state table for history rows ({human_bytes(self.nbytes)}, {dtype}) "
                     f"memory-mapped in {folder}, rewritten at each epoch start, removed when training ends")
        for start in range(0, self.positions, self._per_shard):
            shape = (min(self._per_shard, self.positions - start), hidden)
            self._shards.append(np.zeros(shape, dtype=numpy_dtype) if folder is None
                                else _scratch_map(folder, shape, numpy_dtype, label))

    def write(self, rows: torch.Tensor, states: torch.Tensor, mask: torch.Tensor) -> None:
        """Store `states` [n, L, hidden] at catalogue `rows` [n], keeping the positions where
        `mask` [n, L] is True, in order."""
        rows = rows.reshape(-1).cpu()
        counts = mask.sum(dim=1).cpu()
        over = (counts > self.capacity[rows]).nonzero()
        if over.numel():
            k = int(over[0, 0])
            raise ValueError(f"catalogue row {int(rows[k])} has {int(counts[k])} positions but the state table "
                             f"holds {int(self.capacity[rows[k]])} for it")
        used = int(counts.max()) if counts.numel() else 0
        order = packed_positions(mask)[:, :used]
        packed = states.gather(1, order.unsqueeze(-1).expand(-1, -1, states.shape[-1]))
        targets, keep = self._flat_positions(rows, counts, used)
        values = packed[keep.to(packed.device)].to(STORAGE_DTYPES[self.dtype][1])  # [their sum, hidden]
        self.counts[rows] = counts
        if self._device_states is not None:
            self._device_states[targets.to(self._device_states.device)] = values.to(self._device_states.device)
            return
        values = values.cpu()
        values = values.view(torch.int16).numpy().view(np.uint16) if self.dtype == "bfloat16" else values.numpy()
        for shard, picked, local in self._by_shard(targets.numpy()):
            shard[local] = values[picked]

    def gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(states [n, k, hidden] in the stored dtype, mask [n, k]) of catalogue `rows`, k their
        most positions; on the table's device (the CPU unless it lives on an accelerator)."""
        index = rows.reshape(-1).cpu()
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.rows):
            raise IndexError(f"state table rows {int(index.min())}..{int(index.max())} outside 0..{self.rows - 1}")
        counts = self.counts[index]
        if counts.numel() and int(counts.min()) == 0:
            raise RuntimeError("the state table has rows never written: refresh it before reading")
        used = max(int(counts.max()) if counts.numel() else 1, 1)
        sources, valid = self._flat_positions(index, counts, used)
        if self._device_states is not None:
            device = self._device_states.device
            valid = valid.to(device)
            states = torch.zeros(len(index), used, self.hidden, dtype=self._device_states.dtype, device=device)
            states[valid] = self._device_states[sources.to(device)]
            return states, valid
        out = np.zeros((len(index), used, self.hidden), dtype=self._shards[0].dtype)
        picked_values = np.empty((sources.numel(), self.hidden), dtype=out.dtype)
        for shard, picked, local in self._by_shard(sources.numpy()):
            picked_values[picked] = shard[local]
        out[valid.numpy()] = picked_values
        return torch.from_numpy(out).view(STORAGE_DTYPES[self.dtype][1]), valid

    def _flat_positions(self, rows: torch.Tensor, counts: torch.Tensor,
                        used: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(table positions of each row's first counts[i] positions, flattened row after row;
        the [n, used] mask saying which of a row's `used` slots they fill)."""
        valid = torch.arange(used) < counts.unsqueeze(1)
        return (self.offsets[rows].unsqueeze(1) + torch.arange(used))[valid], valid

    def _by_shard(self, flat: np.ndarray):
        """For each host shard that table positions `flat` touch: (the shard, which entries of
        `flat` fall in it, their indices inside it)."""
        shard_of = flat // self._per_shard
        for number in np.unique(shard_of):
            picked = shard_of == number
            yield self._shards[int(number)], picked, flat[picked] - int(number) * self._per_shard


def _scratch_map(folder: Path, shape: tuple[int, ...], dtype, label: str) -> np.ndarray:
    """A writable memory map of `shape` in a file of `folder` that is unlinked at once: the
    mapping keeps the space until it is closed, then the system frees it. The file's blocks are
    reserved first: writing into a sparse map on a full disk would kill the process (SIGBUS)
    instead of saying why."""
    handle, path = tempfile.mkstemp(prefix=".state-table-", suffix=".bin", dir=folder)
    try:
        try:
            os.posix_fallocate(handle, 0, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        except OSError as exc:
            raise RecsysError(
                f"the {label} token-state table could not reserve its space in {folder} ({exc.strerror}); "
                "free disk space, give the layer cache another folder, or train with plmnr_history cached"
            ) from None
        return np.memmap(path, dtype=dtype, mode="r+", shape=shape)
    finally:
        os.close(handle)
        os.unlink(path)
