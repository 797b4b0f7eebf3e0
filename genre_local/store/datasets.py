"""Typed reads of an imported dataset (news, user histories, synthetic truth), as the
generation pipeline and the demo need them. Plain queries, ordered results.

Writes of these tables belong to the importer (data/mind_import.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import duckdb

from recsys.catalog import NEW_USER_MAX_HISTORY


@dataclass(frozen=True)
class NewsRow:
    nid: str
    title: str
    abstract: str
    category: str
    subcategory: str


@dataclass(frozen=True)
class UserHistory:
    user_id: str
    history: tuple[str, ...]  # nids, oldest first

    @property
    def cold(self) -> bool:
        """A new user in GENRE's sense: the generator writes synthetic news for these only."""
        return 1 <= len(self.history) <= NEW_USER_MAX_HISTORY


class UserTruth(NamedTuple):
    """A synthetic user's true interests (`user_truth`); a tuple so fidelity scoring can unpack it."""

    topics: list[str]
    region: str  # "" when the user has no home state


def read_news(conn: duckdb.DuckDBPyConnection, dataset: str) -> list[NewsRow]:
    """Every news item once (the importer merges an nid seen in several splits), by nid."""
    rows = conn.execute(
        "SELECT nid, any_value(title), any_value(abstract), any_value(category), any_value(subcategory) "
        "FROM news WHERE dataset = ? GROUP BY nid ORDER BY nid",
        [dataset],
    ).fetchall()
    return [NewsRow(*row) for row in rows]


def read_histories(conn: duckdb.DuckDBPyConnection, dataset: str) -> list[UserHistory]:
    """Each user's history (the same on all their impressions in MIND): from the latest train
    impression, else the latest of any split. Users with an empty history are left out."""
    rows = conn.execute(
        """
        SELECT user_id, history FROM impressions WHERE dataset = ?
        QUALIFY row_number() OVER (
            PARTITION BY user_id ORDER BY (split = 'train') DESC, time DESC, impression_id DESC) = 1
        ORDER BY user_id
        """,
        [dataset],
    ).fetchall()
    return [UserHistory(user_id, tuple(history)) for user_id, history in rows if history]


def read_truth(conn: duckdb.DuckDBPyConnection, dataset: str) -> dict[str, UserTruth]:
    """The synthetic generator's true interests per user; empty for real MIND data."""
    rows = conn.execute("SELECT user_id, topics, region FROM user_truth WHERE dataset = ?", [dataset]).fetchall()
    return {user: UserTruth(list(topics), region) for user, topics, region in rows}
