"""GENRE dataset variants, built only from what the store holds (never mutating imported rows).

- original: news and impressions as imported
- ns: the latest valid enhanced title replaces each news title (news without one keep theirs)
- up: user profiles (topics, regions) for interest fusion
- ng: the first K synthetic news (by position) of each cold user appended to the end of the
  history, as the most recent reads; the synthetic news join the variant's news table
- chain: ng with news written by the chain-based generator
Combinations join with '+', e.g. ns+up+ng.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from genre_local.data.taxonomy import COLD_USER_MAX_HISTORY
from genre_local.errors import UserError
from recsys.features import NewsRows

PARTS: tuple[str, ...] = ("original", "ns", "up", "ng", "chain")


@dataclass(frozen=True)
class VariantSpec:
    ns: bool = False
    up: bool = False
    ng_source: str | None = None  # 'news' (ng) or 'chain' (chain); None: no synthetic news
    ng_k: int = 0

    @property
    def name(self) -> str:
        parts = [p for p, on in (("ns", self.ns), ("up", self.up)) if on]
        if self.ng_source:
            parts.append("ng" if self.ng_source == "news" else "chain")
        return "+".join(parts) or "original"

    def key(self) -> str:
        return json.dumps({"ns": self.ns, "up": self.up, "ng": self.ng_source, "k": self.ng_k}, sort_keys=True)


def parse_variant(text: str, ng_k: int = 2) -> VariantSpec:
    """'ns+up+ng' -> VariantSpec; one-line UserError on unknown or conflicting parts."""
    parts = [p.strip().lower() for p in text.split("+") if p.strip()]
    if not parts:
        raise UserError("--variant is empty; use original, ns, up, ng, chain or a combination like ns+up+ng")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise UserError(
            f"--variant: unknown part '{unknown[0]}' (use original, ns, up, ng, chain or combinations like ns+up+ng)"
        )
    if "original" in parts and len(parts) > 1:
        raise UserError(f"--variant {text}: 'original' cannot be combined with other parts")
    if "ng" in parts and "chain" in parts:
        raise UserError(f"--variant {text}: use either ng (one-pass news) or chain (chain-generated news), not both")
    if ng_k < 0:
        raise UserError(f"--ng-k must be 0 or more, got {ng_k}")
    source = "news" if "ng" in parts else "chain" if "chain" in parts else None
    return VariantSpec(ns="ns" in parts, up="up" in parts, ng_source=source, ng_k=ng_k if source else 0)


@dataclass
class VariantRows:
    """Everything a variant needs, read from the store in one short session."""

    dataset: str
    spec: VariantSpec
    news: NewsRows
    impressions: pa.Table  # split, impression_id, user_id, history, original_history_len, candidates, labels
    profiles: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # user -> (topics, regions)
    stats: dict[str, int] = field(default_factory=dict)


_GENERATE_HINT = {
    "ns": ("enhanced_titles", "summarize", "enhanced titles"),
    "up": ("user_profiles", "profile", "user profiles"),
    "news": ("synthetic_news", "news", "synthetic news"),
    "chain": ("synthetic_news", "chain", "chain-generated news"),
}


def _require_generations(conn: duckdb.DuckDBPyConnection, dataset: str, what: str, variant: str) -> None:
    view, task, label = _GENERATE_HINT[what]
    sql = f"SELECT count(*) FROM {view} WHERE dataset = ?"
    params: list[object] = [dataset]
    if view == "synthetic_news":
        sql += " AND source_task = ?"
        params.append(task)
    try:
        count = conn.execute(sql, params).fetchall()[0][0]
    except duckdb.CatalogException:
        count = 0
    if not count:
        raise UserError(
            f"variant '{variant}' needs {label} for dataset '{dataset}', and the store has none; "
            f"run `genre-local generate --dataset {dataset} --task {task}` first"
        )


def content_fingerprint(conn: duckdb.DuckDBPyConnection, dataset: str, spec: VariantSpec) -> str:
    """A cheap hash of every store row the variant reads (computed inside DuckDB)."""
    queries = [
        "SELECT count(*), bit_xor(hash(nid, category, subcategory, title, abstract)) FROM news WHERE dataset = ?",
        "SELECT count(*), bit_xor(hash(split, impression_id, user_id, history, candidates, labels)) "
        "FROM impressions WHERE dataset = ?",
    ]
    if spec.ns:
        queries.append("SELECT count(*), bit_xor(hash(nid, title)) FROM enhanced_titles WHERE dataset = ?")
    if spec.up:
        queries.append("SELECT count(*), bit_xor(hash(user_id, topics, regions)) FROM user_profiles WHERE dataset = ?")
    if spec.ng_source:
        queries.append(
            "SELECT count(*), bit_xor(hash(user_id, nid, position, title, abstract, category, subcategory, source_task)) "
            "FROM synthetic_news WHERE dataset = ?"
        )
    digest = hashlib.sha256(f"{dataset}|{spec.key()}".encode())
    for sql in queries:
        digest.update(repr(conn.execute(sql, [dataset]).fetchall()).encode())
    return digest.hexdigest()[:20]


def read_variant(conn: duckdb.DuckDBPyConnection, dataset: str, spec: VariantSpec) -> VariantRows:
    """Read the variant's rows (read-only queries; the imported tables are never touched)."""
    name = spec.name
    if spec.ns:
        _require_generations(conn, dataset, "ns", name)
    if spec.up:
        _require_generations(conn, dataset, "up", name)
    use_synthetic = spec.ng_source is not None and spec.ng_k > 0
    if use_synthetic:
        _require_generations(conn, dataset, spec.ng_source, name)

    title_sql = "coalesce(e.title, n.title)" if spec.ns else "n.title"
    enhanced_join = (
        "LEFT JOIN enhanced_titles e ON e.dataset = n.dataset AND e.nid = n.nid" if spec.ns else ""
    )
    enhanced_flag = "e.title IS NOT NULL" if spec.ns else "false"
    news_sql = (
        f"SELECT n.nid, {title_sql} AS title, n.abstract, n.category, n.subcategory, {enhanced_flag} AS enhanced "
        f"FROM news n {enhanced_join} WHERE n.dataset = $dataset"
    )
    # The synthetic news each cold user gets: the first K by position.
    picked_sql = (
        "SELECT user_id, nid, title, abstract, category, subcategory, position FROM ("
        " SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY position, nid) AS rank"
        " FROM synthetic_news WHERE dataset = $dataset AND source_task = $source"
        ") WHERE rank <= $k"
    )
    params: dict[str, object] = {"dataset": dataset}
    if use_synthetic:
        params |= {"source": spec.ng_source, "k": spec.ng_k}
        news_sql += (
            " UNION ALL SELECT DISTINCT p.nid, p.title, p.abstract, p.category, p.subcategory, NULL "
            f"FROM ({picked_sql}) p WHERE p.nid NOT IN (SELECT nid FROM news WHERE dataset = $dataset)"
        )
    # A fresh cursor: Arrow output needs a connection without a half-read execute() result.
    reader = conn.cursor()
    news = reader.sql(f"SELECT * FROM ({news_sql}) ORDER BY nid", params=params).to_arrow_table()

    if use_synthetic:
        impressions_sql = (
            "SELECT i.split, i.impression_id, i.user_id, "
            f" CASE WHEN len(i.history) BETWEEN 1 AND {COLD_USER_MAX_HISTORY} AND s.nids IS NOT NULL"
            "  THEN list_concat(i.history, s.nids) ELSE i.history END AS history,"
            " len(i.history) AS original_history_len, i.candidates, i.labels "
            "FROM impressions i LEFT JOIN ("
            f" SELECT user_id, list(nid ORDER BY position, nid) AS nids FROM ({picked_sql}) GROUP BY user_id"
            ") s ON s.user_id = i.user_id WHERE i.dataset = $dataset ORDER BY i.split, i.impression_id"
        )
    else:
        impressions_sql = (
            "SELECT split, impression_id, user_id, history, len(history) AS original_history_len, candidates, labels "
            "FROM impressions WHERE dataset = $dataset ORDER BY split, impression_id"
        )
    impressions = reader.sql(impressions_sql, params=params).to_arrow_table()
    reader.close()

    profiles: dict[str, tuple[list[str], list[str]]] = {}
    if spec.up:
        for user_id, topics, regions in conn.execute(
            "SELECT user_id, topics, regions FROM user_profiles WHERE dataset = ? ORDER BY user_id", [dataset]
        ).fetchall():
            profiles[user_id] = (list(topics or []), list(regions or []))

    enhanced = [e for e in news.column("enhanced").to_pylist() if e is not None]  # real news only
    stats = {
        "news": news.num_rows,
        "impressions": impressions.num_rows,
        "enhanced_titles": int(sum(enhanced)) if spec.ns else 0,
        "titles_kept": int(len(enhanced) - sum(enhanced)) if spec.ns else 0,
        "profiles": len(profiles),
    }
    if use_synthetic:
        row = conn.execute(
            f"SELECT count(DISTINCT user_id), count(*) FROM ({picked_sql})", params
        ).fetchall()[0]
        stats["ng_users"], stats["synthetic_news"] = int(row[0]), int(row[1])
    rows = NewsRows(
        nids=news.column("nid").to_pylist(),
        titles=news.column("title").to_pylist(),
        abstracts=news.column("abstract").to_pylist(),
        categories=news.column("category").to_pylist(),
        subcategories=news.column("subcategory").to_pylist(),
    )
    return VariantRows(dataset, spec, rows, impressions, profiles, stats)
