"""PLMNR's token-state history table (plmnr_history "states").

For every catalogue news it holds the tuned top layer's output token states, computed at an
epoch start from the weights of that moment, so a training step can pool a history-only news
(with dropout, through the attention pooling and the projection, both with gradient) without
running the tuned layer on it. A row keeps only the positions the pooling reads (real text
tokens, then category/subcategory/image), packed to the left: attention pooling does not depend
on their order, and a batch reads only as many columns as its longest row has.

It is rewritten at every epoch start, so it is scratch, not a cache: in memory, or (with a
folder) in memory-mapped shards of the layer cache's size whose files are unlinked as soon as
they are mapped, so nothing is left on disk when the process ends, killed or not. On an
accelerator with room for it the table lives in that device's memory instead. 16-bit like the
layer cache: ~(tokens per news) x hidden x 2 bytes per news (MIND-small with 30-token titles and
a category token: about 1.5 GB at hidden 384).
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
from recsys.layer_cache import DISK_MARGIN, SHARD_BYTES, STORAGE_DTYPES, gather_rows, human_bytes


def _announce(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def packed_positions(mask: torch.Tensor) -> torch.Tensor:
    """[N, L] bool -> [N, L] column indices, each row's True columns first (in order), then its
    False ones: gathering with it packs a row's real positions to the left."""
    return torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices


class TokenStateTable:
    """States [rows, width, hidden] and their position counts, written and read by catalogue row."""

    def __init__(self, capacity: torch.Tensor, hidden: int, dtype: str, folder: Path | None,
                 device: torch.device | None = None, label: str = "plmnr",
                 shard_bytes: int = SHARD_BYTES, announce: Callable[[str], None] = _announce) -> None:
        """`capacity` [rows]: the most positions each row will hold (the table's width is their
        maximum). `device`: keep the whole table there as one tensor (an accelerator with room
        for it); None: numpy shards in host memory, or memory-mapped in `folder`."""
        if dtype not in STORAGE_DTYPES:
            raise ValueError(f"state table dtype {dtype!r} is not one of {', '.join(STORAGE_DTYPES)}")
        self.rows = int(capacity.numel())
        self.width = max(int(capacity.max()) if self.rows else 1, 1)
        self.hidden, self.dtype = hidden, dtype
        self.counts = torch.zeros(self.rows, dtype=torch.int64)  # positions written per row (0: none yet)
        numpy_dtype, torch_dtype = STORAGE_DTYPES[dtype]
        self.nbytes = self.rows * self.width * hidden * np.dtype(numpy_dtype).itemsize
        self._device_states: torch.Tensor | None = None
        self._shards: list[np.ndarray] = []
        if device is not None:
            self._device_states = torch.zeros(self.rows, self.width, hidden, dtype=torch_dtype, device=device)
            return
        row_bytes = self.width * hidden * np.dtype(numpy_dtype).itemsize
        self._per_shard = max(1, shard_bytes // row_bytes)
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
        for start in range(0, self.rows, self._per_shard):
            shape = (min(self._per_shard, self.rows - start), self.width, hidden)
            self._shards.append(np.zeros(shape, dtype=numpy_dtype) if folder is None
                                else _scratch_map(folder, shape, numpy_dtype, label))

    def write(self, rows: torch.Tensor, states: torch.Tensor, mask: torch.Tensor) -> None:
        """Store `states` [n, L, hidden] at catalogue `rows` [n], keeping the positions where
        `mask` [n, L] is True, packed to the left."""
        counts = mask.sum(dim=1).cpu()
        if counts.numel() and int(counts.max()) > self.width:
            raise ValueError(f"a row has {int(counts.max())} positions but the state table holds {self.width}")
        used = int(counts.max()) if counts.numel() else 0
        order = packed_positions(mask)[:, :used]
        packed = states.gather(1, order.unsqueeze(-1).expand(-1, -1, states.shape[-1]))
        keep = torch.arange(used, device=mask.device) < counts.to(mask.device).unsqueeze(1)
        packed = (packed * keep.unsqueeze(-1)).to(STORAGE_DTYPES[self.dtype][1])
        rows = rows.reshape(-1).cpu()
        self.counts[rows] = counts
        if self._device_states is not None:
            target = rows.to(self._device_states.device)
            self._device_states[target] = 0
            self._device_states[target, :used] = packed.to(self._device_states.device)
            return
        values = packed.cpu()
        values = values.view(torch.int16).numpy().view(np.uint16) if self.dtype == "bfloat16" else values.numpy()
        index = rows.numpy().astype(np.int64)
        shard_of = index // self._per_shard
        for shard in np.unique(shard_of):
            picked = shard_of == shard
            local = index[picked] - int(shard) * self._per_shard
            target = self._shards[int(shard)]
            target[local] = 0
            target[local, :used] = values[picked]

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
        if self._device_states is not None:
            device = self._device_states.device
            states = self._device_states[index.to(device), :used]
            return states, torch.arange(used, device=device) < counts.to(device).unsqueeze(1)
        states = gather_rows(self._shards, self._per_shard, index, used, self.rows)
        return states.view(STORAGE_DTYPES[self.dtype][1]), torch.arange(used) < counts.unsqueeze(1)


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
