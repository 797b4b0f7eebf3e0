"""Typed reads of an imported dataset (news, user histories, synthetic truth), as the
generation pipeline and `data stats` need them. Plain queries, ordered results.

Writes of these tables belong to the importer (data/mind_import.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import duckdb

from genre_local.data.mind_import import SPLITS
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


@dataclass(frozen=True)
class DatasetStats:
    name: str
    news: int
    users: int
    impressions: dict[str, int]
    clicks: dict[str, int]
    cold_users: int
    warm_users: int
    empty_history_users: int
    history_percentiles: dict[str, float]
    categories: dict[str, int]
    truth_users: int

    def as_json(self) -> dict[str, Any]:
        return {
            "dataset": self.name,
            "news": self.news,
            "users": self.users,
            "impressions": self.impressions,
            "clicks": self.clicks,
            "cold_users": self.cold_users,
            "warm_users": self.warm_users,
            "empty_history_users": self.empty_history_users,
            "history_percentiles": self.history_percentiles,
            "categories": self.categories,
            "truth_users": self.truth_users,
        }


def read_dataset_stats(conn: duckdb.DuckDBPyConnection, name: str) -> DatasetStats:
    """News, users, impressions and clicks per split, cold/warm users, history percentiles,
    categories: one query per measure group, no row loops."""
    news = conn.execute("SELECT count(*) FROM news WHERE dataset = ?", [name]).fetchone()[0]
    per_split = dict.fromkeys(SPLITS, 0)
    clicks = dict.fromkeys(SPLITS, 0)
    for split, impressions, split_clicks in conn.execute(
        "SELECT split, count(*), coalesce(sum(list_sum(labels)), 0) "
        "FROM impressions WHERE dataset = ? GROUP BY split",
        [name],
    ).fetchall():
        per_split[split] = int(impressions)
        clicks[split] = int(split_clicks)
    # A user's history is the longest one among their impressions (MIND repeats it per line).
    users, cold, warm, empty, p50, p90, p99 = conn.execute(
        """
        WITH per_user AS (
            SELECT user_id, max(len(history)) AS n FROM impressions WHERE dataset = ? GROUP BY user_id
        )
        SELECT count(*),
               count(*) FILTER (WHERE n BETWEEN 1 AND ?),
               count(*) FILTER (WHERE n > ?),
               count(*) FILTER (WHERE n = 0),
               coalesce(quantile_disc(n, 0.5), 0),
               coalesce(quantile_disc(n, 0.9), 0),
               coalesce(quantile_disc(n, 0.99), 0)
        FROM per_user
        """,
        [name, NEW_USER_MAX_HISTORY, NEW_USER_MAX_HISTORY],
    ).fetchone()
    categories = dict(
        conn.execute(
            "SELECT category, count(*) AS n FROM news WHERE dataset = ? GROUP BY category ORDER BY n DESC, category",
            [name],
        ).fetchall()
    )
    truth_users = conn.execute("SELECT count(*) FROM user_truth WHERE dataset = ?", [name]).fetchone()[0]
    return DatasetStats(
        name=name,
        news=int(news),
        users=int(users),
        impressions=per_split,
        clicks=clicks,
        cold_users=int(cold),
        warm_users=int(warm),
        empty_history_users=int(empty),
        history_percentiles={"p50": float(p50), "p90": float(p90), "p99": float(p99)},
        categories={str(k): int(v) for k, v in categories.items()},
        truth_users=int(truth_users),
    )
