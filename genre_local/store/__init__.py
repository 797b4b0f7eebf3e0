"""The DuckDB store: one file holding datasets, generations and training runs.

`connection.py` opens and migrates it; typed reads and writes live beside it, one module per
table family (`datasets.py`, `generations.py`), so SQL stays out of the stages.
"""

from genre_local.store.connection import Store, open_store

__all__ = ["Store", "open_store"]
