"""Reading what the generation tasks need from the store. Plain queries, ordered results."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from genre_local.data.taxonomy import COLD_USER_MAX_HISTORY


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
        return 1 <= len(self.history) <= COLD_USER_MAX_HISTORY


def load_news(conn: duckdb.DuckDBPyConnection, dataset: str) -> list[NewsRow]:
    rows = conn.execute(
        "SELECT nid, any_value(title), any_value(abstract), any_value(category), any_value(subcategory) "
        "FROM news WHERE dataset = ? GROUP BY nid ORDER BY nid",
        [dataset],
    ).fetchall()
    return [NewsRow(*row) for row in rows]


def load_histories(conn: duckdb.DuckDBPyConnection, dataset: str) -> list[UserHistory]:
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


def load_enhanced_titles(conn: duckdb.DuckDBPyConnection, dataset: str, before_round: int) -> dict[str, str]:
    """Latest valid enhanced title per nid from rounds before `before_round` (iterative updating)."""
    if before_round <= 1:
        return {}
    rows = conn.execute(
        """
        SELECT input_id, parsed ->> 'title' FROM generations
        WHERE dataset = ? AND task = 'summarize' AND valid AND round < ?
        QUALIFY row_number() OVER (PARTITION BY input_id ORDER BY round DESC, created_at DESC, fingerprint) = 1
        """,
        [dataset, before_round],
    ).fetchall()
    return dict(rows)


def load_profiles(
    conn: duckdb.DuckDBPyConnection, dataset: str, up_to_round: int
) -> dict[str, tuple[list[str], list[str]]]:
    """Latest valid (topics, regions) per user from rounds up to `up_to_round`."""
    rows = conn.execute(
        """
        SELECT input_id, from_json(parsed -> 'topics', '["VARCHAR"]'), from_json(parsed -> 'regions', '["VARCHAR"]')
        FROM generations
        WHERE dataset = ? AND task = 'profile' AND valid AND round <= ?
        QUALIFY row_number() OVER (PARTITION BY input_id ORDER BY round DESC, created_at DESC, fingerprint) = 1
        """,
        [dataset, up_to_round],
    ).fetchall()
    return {user: (list(topics or []), list(regions or [])) for user, topics, regions in rows}


def load_chain_items(conn: duckdb.DuckDBPyConnection, dataset: str, round_: int) -> dict[str, list[tuple[str, str]]]:
    """(category, title) of the chain's generated news per user in one round (fed back next round)."""
    rows = conn.execute(
        """
        SELECT input_id, from_json(parsed -> 'items', '[{"title": "VARCHAR", "category": "VARCHAR"}]')
        FROM generations
        WHERE dataset = ? AND task = 'chain' AND valid AND round = ?
        QUALIFY row_number() OVER (PARTITION BY input_id ORDER BY created_at DESC, fingerprint) = 1
        """,
        [dataset, round_],
    ).fetchall()
    return {user: [(item["category"], item["title"]) for item in items or []] for user, items in rows}


def load_valid_fingerprints(conn: duckdb.DuckDBPyConnection, dataset: str, task: str) -> set[str]:
    rows = conn.execute(
        "SELECT fingerprint FROM generations WHERE dataset = ? AND task = ? AND valid", [dataset, task]
    ).fetchall()
    return {row[0] for row in rows}


def load_truth(conn: duckdb.DuckDBPyConnection, dataset: str) -> dict[str, tuple[list[str], str]]:
    rows = conn.execute("SELECT user_id, topics, region FROM user_truth WHERE dataset = ?", [dataset]).fetchall()
    return {user: (list(topics), region) for user, topics, region in rows}
