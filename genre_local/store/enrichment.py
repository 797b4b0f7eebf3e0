"""What each generation source added to a dataset (GENRE Table 1's counterpart for the enriched
data): enhanced-title lengths beside the originals, profile coverage, synthetic news counts.

One `EnrichmentStats` per generation source (dataset, LLM, prompt set, and the profile method of
its profiles and chain news) with any valid output, read from the views
the training stage reads (006_generation_sources.sql: the latest valid output per input), so the
numbers describe exactly the data a variant trains on. A profile counts as valid when it names at
least one topic of GENRE's taxonomy: those users form the "Chain" cohort of Table 7
(`chain_cohort_users`).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np

from genre_local.data.taxonomy import PROFILE_TOPICS, US_STATES
from genre_local.store.generations import GenerationSource


@dataclass(frozen=True)
class EnrichmentStats:
    dataset: str
    llm: str
    prompt_set: str
    method: str  # the profile method of its profiles and chain news (titles and one-pass news: any)
    news: int  # news in the dataset
    enhanced_titles: int  # news with an enhanced title from this source
    original_words_mean: float | None  # over the news that have an enhanced title
    original_words_median: float | None
    enhanced_words_mean: float | None
    enhanced_words_median: float | None
    users_with_history: int
    profiled_users: int  # users with a stored profile (valid output)
    valid_profile_users: int  # ... naming at least one taxonomy topic: the Chain cohort
    mean_topics: float | None  # taxonomy topics per valid profile
    mean_regions: float | None  # US states per valid profile
    news_users: int  # users served synthetic news (one-pass generator, task news)
    news_items: int
    chain_users: int  # users served chain-generated news
    chain_items: int

    @property
    def source(self) -> GenerationSource:
        return GenerationSource(self.llm, self.prompt_set, self.method)

    @property
    def label(self) -> str:
        return self.source.label

    @property
    def news_per_user(self) -> float | None:
        return self.news_items / self.news_users if self.news_users else None

    @property
    def chain_per_user(self) -> float | None:
        return self.chain_items / self.chain_users if self.chain_users else None


def _words(column: str) -> str:
    return f"len(regexp_split_to_array(trim({column}), '\\s+'))"


def load_enrichment_stats(conn: duckdb.DuckDBPyConnection, dataset: str) -> list[EnrichmentStats]:
    """One row per generation source with a valid output for `dataset`, sorted by (LLM, prompt
    set, method). Titles and one-pass news do not depend on the profile method: every method's
    row of an (LLM, prompt set) shows them, as a variant of that source reads them."""
    params = {"dataset": dataset, "topics": list(PROFILE_TOPICS), "regions": [r.lower() for r in US_STATES]}
    rows = conn.execute(
        f"""
        WITH sources AS (
            SELECT DISTINCT model AS llm, prompt_set, source_method(task, sampling) AS method FROM generations
            WHERE dataset = $dataset AND valid AND task NOT IN ('label', 'label_scores')
        ), titles AS (
            SELECT e.model AS llm, e.prompt_set, count(*) AS enhanced_titles,
                   avg({_words('n.title')}) AS original_words_mean, median({_words('n.title')}) AS original_words_median,
                   avg({_words('e.title')}) AS enhanced_words_mean, median({_words('e.title')}) AS enhanced_words_median
            FROM enhanced_titles e JOIN news n ON n.dataset = e.dataset AND n.nid = e.nid
            WHERE e.dataset = $dataset GROUP BY ALL
        ), profiles AS (
            SELECT model AS llm, prompt_set, method, user_id,
                   len(list_distinct(list_filter(topics, lambda t: list_contains($topics, t)))) AS topics,
                   len(list_distinct(list_filter(list_transform(regions, lambda r: lower(r)),
                                                 lambda r: list_contains($regions, r)))) AS regions
            FROM user_profiles WHERE dataset = $dataset
        ), profile_stats AS (
            SELECT llm, prompt_set, method, count(*) AS profiled_users, count(*) FILTER (WHERE topics > 0) AS valid_profile_users,
                   avg(topics) FILTER (WHERE topics > 0) AS mean_topics,
                   avg(regions) FILTER (WHERE topics > 0) AS mean_regions
            FROM profiles GROUP BY ALL
        ), one_pass AS (
            SELECT model AS llm, prompt_set, count(DISTINCT user_id) AS news_users, count(*) AS news_items
            FROM synthetic_news WHERE dataset = $dataset AND source_task = 'news' GROUP BY ALL
        ), chain AS (
            SELECT model AS llm, prompt_set, method, count(DISTINCT user_id) AS chain_users, count(*) AS chain_items
            FROM synthetic_news WHERE dataset = $dataset AND source_task = 'chain' GROUP BY ALL
        )
        SELECT s.llm, s.prompt_set, s.method,
               (SELECT count(*) FROM news WHERE dataset = $dataset) AS news,
               coalesce(t.enhanced_titles, 0), t.original_words_mean, t.original_words_median,
               t.enhanced_words_mean, t.enhanced_words_median,
               (SELECT count(DISTINCT user_id) FROM impressions WHERE dataset = $dataset AND len(history) > 0),
               coalesce(p.profiled_users, 0), coalesce(p.valid_profile_users, 0), p.mean_topics, p.mean_regions,
               coalesce(y.news_users, 0), coalesce(y.news_items, 0), coalesce(c.chain_users, 0), coalesce(c.chain_items, 0)
        FROM sources s
        LEFT JOIN titles t USING (llm, prompt_set)
        LEFT JOIN profile_stats p USING (llm, prompt_set, method)
        LEFT JOIN one_pass y USING (llm, prompt_set)
        LEFT JOIN chain c USING (llm, prompt_set, method)
        ORDER BY s.llm, s.prompt_set, s.method
        """,
        params,
    ).fetchall()
    out = []
    for row in rows:
        llm, prompt_set, method, news, titles, ow_mean, ow_med, ew_mean, ew_med, users, profiled, valid, topics, regions, \
            news_users, news_items, chain_users, chain_items = row
        out.append(EnrichmentStats(
            dataset, llm, prompt_set, method, int(news), int(titles), _float(ow_mean), _float(ow_med), _float(ew_mean),
            _float(ew_med), int(users), int(profiled), int(valid), _float(topics), _float(regions),
            int(news_users), int(news_items), int(chain_users), int(chain_items)))
    return out


def chain_cohort_users(conn: duckdb.DuckDBPyConnection, dataset: str, source: GenerationSource) -> list[str]:
    """The Chain cohort (GENRE Table 7): users whose profile from `source` (of its method) names
    at least one taxonomy topic, sorted."""
    rows = conn.execute(
        "SELECT user_id FROM user_profiles WHERE dataset = ? AND model = ? AND prompt_set = ? AND method = ? "
        "AND len(list_filter(topics, lambda t: list_contains(?, t))) > 0 ORDER BY user_id",
        [dataset, source.llm, source.prompt_set, source.method, list(PROFILE_TOPICS)],
    ).fetchall()
    return [r[0] for r in rows]


CHAIN_COHORT_PREFIX = "chain-cohort:"


def chain_cohort_group(source_label: str) -> str:
    """The metric group (run_metrics.user_group) of the Chain cohort of one generation source."""
    return f"{CHAIN_COHORT_PREFIX}{source_label}"


def chain_cohort_impressions(conn: duckdb.DuckDBPyConnection, dataset: str,
                             source: GenerationSource) -> dict[str, np.ndarray]:
    """split -> impression ids (sorted int64) of the Chain cohort's users (`chain_cohort_users`)."""
    rows = conn.execute(
        "SELECT i.split, list(i.impression_id ORDER BY i.impression_id) FROM impressions i "
        "JOIN user_profiles p ON p.dataset = i.dataset AND p.user_id = i.user_id "
        "WHERE i.dataset = ? AND p.model = ? AND p.prompt_set = ? AND p.method = ? "
        "AND len(list_filter(p.topics, lambda t: list_contains(?, t))) > 0 GROUP BY i.split ORDER BY i.split",
        [dataset, source.llm, source.prompt_set, source.method, list(PROFILE_TOPICS)],
    ).fetchall()
    return {split: np.asarray(ids, dtype=np.int64) for split, ids in rows}


def profile_sources(conn: duckdb.DuckDBPyConnection, dataset: str) -> list[GenerationSource]:
    """Every source (LLM, prompt set, method) with at least one valid profile for `dataset`, sorted."""
    return [GenerationSource(*r) for r in conn.execute(
        "SELECT DISTINCT model, prompt_set, method FROM user_profiles WHERE dataset = ? ORDER BY ALL",
        [dataset]).fetchall()]


def _float(value) -> float | None:
    return None if value is None else float(value)
