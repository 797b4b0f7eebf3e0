"""Dataset statistics (`genre-local data stats`); the queries live in store/datasets.py."""

from __future__ import annotations

from genre_local.store import Store
from genre_local.store.datasets import DatasetStats, read_dataset_stats

__all__ = ["DatasetStats", "dataset_stats"]


def dataset_stats(store: Store, name: str) -> DatasetStats:
    store.require_dataset(name)
    return read_dataset_stats(store.conn, name)
