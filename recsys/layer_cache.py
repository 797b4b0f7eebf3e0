"""The frozen-lower-layers hidden-state cache of PLMNR and DIRE.

Their language model's lower layers never change during training, so the hidden states they
produce for every news text are computed once per catalogue and read back at every step;
only the top layer(s) run forward and backward. On disk a cache is one folder:

    <root>/<prefix>-<key>/manifest.json      format, model fingerprint, layer, dtype, shapes, text fingerprint
    <root>/<prefix>-<key>/<segment>-00000.bin ...   raw [rows, width, hidden] shards, memory-mapped

The key hashes (model fingerprint, layer, dtype, text fingerprint), so a changed variant (an
enhanced title, another tokenizer, another model) lands in another folder, like the encoded
data cache. It is written under a temporary name and renamed when complete: a kill leaves no
half cache. Its size is announced before writing and checked against the free disk space.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recsys.errors import RecsysError

CACHE_FORMAT = 1
SHARD_BYTES = 256 * 2**20  # one memory-mapped file per ~256 MiB: MIND-large x 7B is ~700 of them
DISK_MARGIN = 1.05  # the manifest, the file system's own overhead

# numpy has no bfloat16: those shards hold the raw 16 bits and are viewed as bfloat16 in torch.
STORAGE_DTYPES = {"float16": (np.float16, torch.float16), "bfloat16": (np.uint16, torch.bfloat16)}


@dataclass(frozen=True)
class TokenSegment:
    """One text field of every catalogue row: ids [N, L] and mask [N, L] (True on real tokens)."""

    ids: torch.Tensor
    mask: torch.Tensor

    @property
    def width(self) -> int:
        """Columns that hold a real token in some row (texts are right-padded), at least 1."""
        used = torch.nonzero(self.mask.to(torch.bool).any(dim=0))
        return int(used.max()) + 1 if used.numel() else 1


@dataclass(frozen=True)
class CacheSpec:
    """What the cached states are: whose layers, how many of them, stored how."""

    model_fingerprint: str
    layer: int  # hidden states after this many transformer layers
    hidden_size: int
    dtype: str = "float16"

    def __post_init__(self) -> None:
        if self.dtype not in STORAGE_DTYPES:
            raise ValueError(f"cache dtype {self.dtype!r} is not one of {', '.join(STORAGE_DTYPES)}")


def text_fingerprint(segments: dict[str, TokenSegment]) -> str:
    """Hash of the token ids the states are computed from (only the used columns)."""
    digest = hashlib.sha256()
    for name in sorted(segments):
        segment = segments[name]
        ids = segment.ids[:, : segment.width].to(torch.int64) * segment.mask[:, : segment.width].to(torch.int64)
        digest.update(name.encode())
        digest.update(str(tuple(ids.shape)).encode())
        digest.update(np.ascontiguousarray(ids.numpy()).tobytes())
    return digest.hexdigest()[:24]


def cache_bytes(spec: CacheSpec, segments: dict[str, TokenSegment]) -> int:
    """Bytes the cache of `segments` takes on disk."""
    item = np.dtype(STORAGE_DTYPES[spec.dtype][0]).itemsize
    return sum(int(s.ids.shape[0]) * s.width * spec.hidden_size * item for s in segments.values())


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    raise AssertionError("unreachable")


class LayerCache:
    """Hidden states [rows, width, hidden] per segment, gathered by catalogue row."""

    def __init__(self, spec: CacheSpec, text: str, shards: dict[str, list[np.ndarray]], rows: int,
                 rows_per_shard: dict[str, int], folder: Path | None = None) -> None:
        self.spec, self.text, self.rows, self.folder = spec, text, rows, folder
        self._shards, self._rows_per_shard = shards, rows_per_shard

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self._shards)

    @property
    def nbytes(self) -> int:
        return sum(int(shard.nbytes) for shards in self._shards.values() for shard in shards)

    def width(self, segment: str) -> int:
        return int(self._shards[segment][0].shape[1])

    def gather(self, segment: str, rows: torch.Tensor, columns: int | None = None) -> torch.Tensor:
        """States [n, columns, hidden] (the stored 16-bit dtype, on the CPU) of catalogue `rows`:
        their first `columns` token positions (all: None), the others are not read."""
        shards = self._shards[segment]
        width = shards[0].shape[1] if columns is None else min(columns, shards[0].shape[1])
        states = gather_rows(shards, self._rows_per_shard[segment], rows, width, self.rows)
        return states.view(STORAGE_DTYPES[self.spec.dtype][1])


def gather_rows(shards: list[np.ndarray], rows_per_shard: int, rows: torch.Tensor, columns: int,
                total_rows: int) -> torch.Tensor:
    """Rows `rows` (global numbers over `shards`, each [rows_per_shard, width, hidden] but the
    last) with their first `columns` positions, as a CPU tensor of the shards' numpy dtype
    (uint16 for bfloat16: view it); only those rows and columns are read."""
    index = rows.detach().reshape(-1).cpu().numpy().astype(np.int64)
    if index.size and (index.min() < 0 or index.max() >= total_rows):
        raise IndexError(f"rows {index.min()}..{index.max()} outside 0..{total_rows - 1}")
    out = np.empty((index.size, columns, shards[0].shape[2]), dtype=shards[0].dtype)
    shard_of = index // rows_per_shard
    for shard in np.unique(shard_of):
        picked = shard_of == shard
        out[picked] = shards[int(shard)][index[picked] - int(shard) * rows_per_shard, :columns]
    return torch.from_numpy(out)


def cache_folder(root: Path, prefix: str, spec: CacheSpec, text: str) -> Path:
    payload = {"format": CACHE_FORMAT, "model": spec.model_fingerprint, "layer": spec.layer,
               "hidden": spec.hidden_size, "dtype": spec.dtype, "text": text}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]
    return Path(root) / f"{prefix}-{key}"


def _announce(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def layer_cache(
    segments: dict[str, TokenSegment],
    spec: CacheSpec,
    encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    root: Path | None,
    prefix: str,
    batch_size: int = 64,
    shard_bytes: int = SHARD_BYTES,
    announce: Callable[[str], None] = _announce,
) -> LayerCache:
    """The cache of `segments`: opened when `root` already holds it, else computed with `encode`
    (ids [n, w], mask [n, w] -> states [n, w, hidden]) and written there; in memory when root is None."""
    if not segments:
        raise ValueError("layer_cache needs at least one text segment")
    rows = {int(s.ids.shape[0]) for s in segments.values()}
    if len(rows) != 1:
        raise ValueError(f"segments disagree on the number of rows: {sorted(rows)}")
    text = text_fingerprint(segments)
    if root is None:
        return _compute(segments, spec, text, encode, None, batch_size, shard_bytes)
    folder = cache_folder(root, prefix, spec, text)
    if (folder / "manifest.json").is_file():
        return open_layer_cache(folder, spec, text)
    Path(root).mkdir(parents=True, exist_ok=True)
    remove_dead_staging(folder)  # before the free-space check: what it frees counts
    needed = cache_bytes(spec, segments)
    free = shutil.disk_usage(root).free
    if needed * DISK_MARGIN > free:
        raise RecsysError(
            f"the {prefix} layer cache needs {human_bytes(needed)} but {root} has only {human_bytes(free)} free; "
            "free disk space or give the layer cache another folder"
        )
    announce(f"{prefix}: caching layer-{spec.layer} hidden states ({human_bytes(needed)}, {spec.dtype}) in {folder}")
    staging = _staging(folder, os.getpid())
    if staging.exists():
        shutil.rmtree(staging)
    try:
        staging.mkdir(parents=True)
        _compute(segments, spec, text, encode, staging, batch_size, shard_bytes)
        try:
            staging.rename(folder)
        except OSError:  # another process finished the same cache first: theirs is as good
            if not (folder / "manifest.json").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return open_layer_cache(folder, spec, text)


def _staging(folder: Path, pid: int) -> Path:
    """Where process `pid` of this host writes `folder` before renaming it into place."""
    return folder.with_name(f".{folder.name}.{socket.gethostname()}.{pid}.tmp")


def remove_dead_staging(folder: Path) -> list[Path]:
    """Delete the staging folders of `folder` left by processes of this host that are gone (a
    SIGKILL or power cut skips the cleanup; with a 7B model one is tens of GB). Another host's
    (a shared file system) and a live process's are left alone. Returns what it deleted."""
    removed = []
    for staging in folder.parent.glob(glob.escape(f".{folder.name}.{socket.gethostname()}.") + "*.tmp"):
        pid = staging.name.removesuffix(".tmp").rsplit(".", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _compute(segments, spec: CacheSpec, text: str, encode, folder: Path | None, batch_size: int,
             shard_bytes: int) -> LayerCache:
    numpy_dtype = STORAGE_DTYPES[spec.dtype][0]
    torch_dtype = STORAGE_DTYPES[spec.dtype][1]
    rows = int(next(iter(segments.values())).ids.shape[0])
    shards: dict[str, list[np.ndarray]] = {}
    per_shard: dict[str, int] = {}
    manifest_segments = {}
    for name, segment in segments.items():
        width = segment.width
        row_bytes = width * spec.hidden_size * np.dtype(numpy_dtype).itemsize
        per = max(1, shard_bytes // row_bytes)
        per_shard[name] = per
        shards[name], files = [], []
        for number, start in enumerate(range(0, max(rows, 1), per)):
            count = min(per, rows - start)
            shape = (count, width, spec.hidden_size)
            if folder is None:
                array = np.zeros(shape, dtype=numpy_dtype)
            else:
                file = f"{name}-{number:05d}.bin"
                array = np.lib.format.open_memmap(folder / file, mode="w+", dtype=numpy_dtype, shape=shape)
                reserve_blocks(folder / file)
                files.append({"file": file, "rows": count})
            with torch.no_grad():
                for lo in range(0, count, batch_size):
                    hi = min(lo + batch_size, count)
                    ids = segment.ids[start + lo : start + hi, :width]
                    mask = segment.mask[start + lo : start + hi, :width].to(torch.bool)
                    states = encode(ids, mask).to(torch.float32).to(torch_dtype).cpu()
                    array[lo:hi] = states.view(torch.int16).numpy().view(numpy_dtype) if spec.dtype == "bfloat16" \
                        else states.numpy()
            if isinstance(array, np.memmap):
                array.flush()
            shards[name].append(array)
        manifest_segments[name] = {"width": width, "rows_per_shard": per, "shards": files}
    if folder is not None:
        manifest = {"format": CACHE_FORMAT, "model": spec.model_fingerprint, "layer": spec.layer,
                    "hidden": spec.hidden_size, "dtype": spec.dtype, "text": text, "rows": rows,
                    "segments": manifest_segments}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return LayerCache(spec, text, shards, rows, per_shard, folder)


def reserve_blocks(path: Path) -> None:
    """Allocate a freshly created (sparse) file's blocks now. Writing through a memory map into
    a sparse file on a disk that filled up since the free-space check kills the process with
    SIGBUS; reserving first turns that into a RecsysError naming the file."""
    with open(path, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        except OSError as exc:
            raise RecsysError(f"could not reserve {path}'s space ({exc.strerror}); free disk space and retry") from None


def open_layer_cache(folder: Path, spec: CacheSpec, text: str) -> LayerCache:
    """A written cache, memory-mapped read-only; RecsysError when it is not the one asked for."""
    manifest = json.loads((folder / "manifest.json").read_text())
    expected = {"format": CACHE_FORMAT, "model": spec.model_fingerprint, "layer": spec.layer,
                "hidden": spec.hidden_size, "dtype": spec.dtype, "text": text}
    wrong = [k for k, v in expected.items() if manifest.get(k) != v]
    if wrong:
        raise RecsysError(f"layer cache {folder} does not match this model/data ({', '.join(wrong)}); delete the folder and retry")
    shards: dict[str, list[np.ndarray]] = {}
    per: dict[str, int] = {}
    for name, entry in manifest["segments"].items():
        per[name] = int(entry["rows_per_shard"])
        shards[name] = [np.load(folder / shard["file"], mmap_mode="r") for shard in entry["shards"]]
        for shard, array in zip(entry["shards"], shards[name], strict=True):
            if array.shape != (shard["rows"], entry["width"], spec.hidden_size):
                raise RecsysError(f"layer cache {folder}/{shard['file']} has shape {array.shape}; delete the folder and retry")
    return LayerCache(spec, text, shards, int(manifest["rows"]), per, folder)
