"""Generation rows that cross process and machine boundaries: Parquet shard files in a run folder,
their validation, and their exactly-once merge into the store.

DuckDB allows one writing process, so workers (local processes, Ray actors on other machines)
never open the store. Each completed batch becomes one shard: written under a temporary name,
fsynced, then renamed, so a shard under its final name is complete. The driver alone merges
shards into `generations`, one transaction per shard, keyed by fingerprint, and moves each merged
shard aside. A shard that cannot be read or fails validation (a worker killed mid-write, a
damaged file, foreign rows) is moved to `quarantine/` with a message and never half-merged.

Layout of a run folder (shared storage on a cluster):
    pending/    complete shards not yet merged (and `.partial` files being written)
    merged/     shards whose rows are in the store
    quarantine/ shards refused, each beside a `.reason.txt`
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genre_local.store.connection import Store
from genre_local.store.generations import GENERATION_ARROW_SCHEMA as GENERATION_SCHEMA

SHARD_SUFFIX = ".parquet"
PARTIAL_SUFFIX = ".partial"
SHARDS_SUBDIR = "generation-shards"


@dataclass(frozen=True)
class RunFolder:
    """Where shards live between the workers that write them and the driver that merges them."""

    root: Path

    @property
    def pending(self) -> Path:
        return self.root / "pending"

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def create(self) -> RunFolder:
        for folder in (self.pending, self.merged, self.quarantine):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def ready_shards(self) -> list[Path]:
        """Complete shards waiting to be merged, oldest first (name ties broken by name)."""
        if not self.pending.is_dir():
            return []
        shards = [p for p in self.pending.iterdir() if p.name.endswith(SHARD_SUFFIX) and not p.name.startswith(".")]
        return sorted(shards, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def partial_files(self) -> list[Path]:
        if not self.pending.is_dir():
            return []
        return sorted(p for p in self.pending.iterdir() if p.name.endswith(PARTIAL_SUFFIX))


def default_run_folder(cache_dir: Path) -> RunFolder:
    return RunFolder(cache_dir / SHARDS_SUBDIR)


def write_shard(folder: RunFolder, rows: pa.Table, run_id: str, worker: str) -> Path | None:
    """Write one batch's rows as a complete shard: temp name, fsync, rename (atomic on POSIX).

    Returns the shard's path, or None for an empty batch (no file)."""
    if rows.num_rows == 0:
        return None
    folder.pending.mkdir(parents=True, exist_ok=True)
    name = f"{run_id}-{worker}-{uuid.uuid4().hex[:12]}"
    temp = folder.pending / f".{name}{PARTIAL_SUFFIX}"
    final = folder.pending / f"{name}{SHARD_SUFFIX}"
    rows = rows.cast(GENERATION_SCHEMA)
    with open(temp, "wb") as handle:
        pq.write_table(rows, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, final)
    _fsync_dir(folder.pending)
    return final


def _fsync_dir(folder: Path) -> None:
    """Makes the rename itself durable: without it a power cut can lose a complete shard's name."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ShardError(ValueError):
    """A shard that must not be merged; the message says why."""


def read_shard(path: Path) -> pa.Table:
    """The shard's rows, checked: readable, the generation schema, non-empty unique fingerprints."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ShardError(f"unreadable Parquet ({' '.join(str(exc).split())[:160]})") from exc
    missing = [name for name in GENERATION_SCHEMA.names if name not in table.column_names]
    if missing:
        raise ShardError(f"missing columns {', '.join(missing)}")
    try:
        table = table.select(GENERATION_SCHEMA.names).cast(GENERATION_SCHEMA)
    except (pa.ArrowException, ValueError) as exc:
        raise ShardError(f"columns of the wrong type ({' '.join(str(exc).split())[:160]})") from exc
    if table.num_rows == 0:
        raise ShardError("no rows")
    fingerprints = table.column("fingerprint").to_pylist()
    if any(not f for f in fingerprints):
        raise ShardError("a row without a fingerprint")
    if len(set(fingerprints)) != len(fingerprints):
        raise ShardError("a fingerprint twice in one shard")
    for name in ("dataset", "task", "input_id", "model", "run_id", "raw_output", "prompt", "valid", "created_at"):
        if table.column(name).null_count:
            raise ShardError(f"NULL in column {name}")
    return table


@dataclass(frozen=True)
class MergedShard:
    path: Path  # where the shard lies now (merged/)
    rows: pa.Table  # every row the shard held
    written: int  # rows that reached the store (a valid stored row is never replaced by an invalid one)


@dataclass(frozen=True)
class QuarantinedShard:
    path: Path  # where the shard lies now (quarantine/)
    reason: str

    @property
    def message(self) -> str:
        return f"shard {self.path.name} quarantined in {self.path.parent}: {self.reason}"


@dataclass
class MergeReport:
    merged: list[MergedShard]
    quarantined: list[QuarantinedShard]

    def tables(self, run_id: str | None = None) -> list[pa.Table]:
        """The merged shards' rows, only those written by run_id when given."""
        out = []
        for shard in self.merged:
            rows = shard.rows
            if run_id is not None:
                rows = rows.filter(pc.equal(rows.column("run_id"), run_id))
            if rows.num_rows:
                out.append(rows)
        return out


def merge_shard(store: Store, rows: pa.Table) -> int:
    """One transaction: INSERT OR REPLACE by fingerprint, except that an invalid row never
    replaces a valid stored one (a late shard from an older attempt must not undo a success).
    Returns the rows written."""
    with store.transaction() as conn, store.registered("_shard_rows", rows) as view:
        keep = (
            f"SELECT s.* FROM {view} s WHERE s.valid OR NOT EXISTS "
            "(SELECT 1 FROM generations g WHERE g.fingerprint = s.fingerprint AND g.valid)"
        )
        written = conn.execute(f"SELECT count(*) FROM ({keep})").fetchone()[0]
        conn.execute(f"INSERT OR REPLACE INTO generations BY NAME {keep}")
    return int(written)


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    os.replace(path, target)
    return target


def quarantine(folder: RunFolder, path: Path, reason: str) -> QuarantinedShard:
    target = _move(path, folder.quarantine)
    target.with_name(target.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
    return QuarantinedShard(target, reason)


def merge_ready(store: Store, folder: RunFolder, shards: Iterable[Path] | None = None) -> MergeReport:
    """Merge complete shards (all ready ones by default), each in its own transaction, then move
    it to merged/. A crash between the commit and the move re-merges the same rows on the next
    call, which replaces them with themselves: still one row per key."""
    report = MergeReport([], [])
    for path in list(shards) if shards is not None else folder.ready_shards():
        if not path.exists():  # merged by an earlier call in this run
            continue
        try:
            rows = read_shard(path)
        except ShardError as exc:
            report.quarantined.append(quarantine(folder, path, str(exc)))
            continue
        written = merge_shard(store, rows)
        report.merged.append(MergedShard(_move(path, folder.merged), rows, written))
    return report


def recover(store: Store, folder: RunFolder) -> MergeReport:
    """Before a run plans its work: merge what an earlier (killed) run left complete, and
    quarantine what it left half-written. Only call it while no worker writes to the folder."""
    report = merge_ready(store, folder)
    for partial in folder.partial_files():
        report.quarantined.append(quarantine(folder, partial, "partial shard: its writer stopped before finishing it"))
    return report
