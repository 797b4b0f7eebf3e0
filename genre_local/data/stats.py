"""Dataset statistics computed inside DuckDB (one query per measure group, no row loops)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genre_local.data.mind_import import SPLITS
from genre_local.store import Store
from recsys.catalog import NEW_USER_MAX_HISTORY


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


def dataset_stats(store: Store, name: str) -> DatasetStats:
    store.require_dataset(name)
    conn = store.conn
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
               coalesce(quantile_cont(n, 0.5), 0),
               coalesce(quantile_cont(n, 0.9), 0),
               coalesce(quantile_cont(n, 0.99), 0)
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
