"""The DuckDB store: one file holding datasets, generations and training runs."""

from genre_local.store.connection import Store, open_store

__all__ = ["Store", "open_store"]
