"""The store -> recsys adapter: a dataset variant's rows read from the store, as recsys inputs.

Everything the recommender stage reads from DuckDB goes through here (read-only queries; the
imported tables are never touched): the variant's rows (`read_variant`), the hash of the rows
it reads (`content_fingerprint`), and the plan that finds or builds the cached tensors
(`plan_encoded`, `fetch_encoded`). A variant whose generations are missing names the
`genre-local generate` command to run first.

A non-original variant reads the outputs of ONE generation source (LLM, prompt set, and for
profiles and the chain's news the profile method): the source is resolved first
(`resolve_source`: the only one stored, or the one `--llm` names) and filters every generated
row read, so outputs of two LLMs, or of two profile methods, never mix in one dataset.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from genre_local.data.taxonomy import PROFILE_TOPICS, US_STATES
from genre_local.errors import UserError
from genre_local.store.generations import DEFAULT_METHOD, GenerationSource, choose_source, sources_with_tasks
from recsys.catalog import NEW_USER_MAX_HISTORY
from recsys.variants import ProfileVocabulary, VariantRows, VariantSpec

if TYPE_CHECKING:
    from recsys.data import EncodedDataset, EncodingOptions, EncodingPlan

PROFILE_VOCABULARY = ProfileVocabulary(topics=PROFILE_TOPICS, regions=US_STATES)
"""GENRE's profile labels (genre_local/data/taxonomy.py), handed to recsys with every variant."""

_GENERATE_HINT = {
    "ns": ("enhanced_titles", "summarize", "enhanced titles"),
    "up": ("user_profiles", "profile", "user profiles"),
    "news": ("synthetic_news", "news", "synthetic news"),
    "chain": ("synthetic_news", "chain", "chain-generated news"),
}


def variant_tasks(spec: VariantSpec) -> list[str]:
    """The generation tasks whose outputs the variant reads (empty for `original`)."""
    tasks = []
    if spec.ns:
        tasks.append("summarize")
    if spec.up:
        tasks.append("profile")
    if spec.ng_source is not None and spec.ng_k > 0:
        tasks.append(spec.ng_source)
    return tasks


def resolve_source(conn: duckdb.DuckDBPyConnection, dataset: str, spec: VariantSpec,
                   wanted: str | None) -> GenerationSource | None:
    """The generation source the variant reads: None for `original`; else the only source with
    outputs for every task the variant needs, or the one `--llm wanted` names (UserError listing
    the stored sources when that is ambiguous or unknown, and naming the generate command when
    no source has them)."""
    if not variant_tasks(spec):
        if wanted is not None:
            raise UserError(f"--llm {wanted!r}: variant '{spec.name}' reads no generations; drop --llm")
        return None
    return choose_source(stored_sources(conn, dataset, spec), wanted, f"variant '{spec.name}' of dataset '{dataset}'")


def stored_sources(conn: duckdb.DuckDBPyConnection, dataset: str, spec: VariantSpec) -> list[GenerationSource]:
    """Every source with outputs for each task the variant reads (sorted, never empty: UserError
    naming the generate command when none has them). The variant must read generations."""
    tasks = variant_tasks(spec)
    available = sources_with_tasks(conn, dataset, tasks)
    if not available:
        for what in _what_of_tasks(spec):
            require_generations(conn, dataset, what, spec.name)
        raise UserError(  # every task has outputs, but no single source wrote all of them
            f"variant '{spec.name}' needs {' and '.join(tasks)} outputs of one LLM for dataset '{dataset}', "
            f"and no source has all of them; run `genre-local generate --dataset {dataset} --task all` with one model"
        )
    return available


def _what_of_tasks(spec: VariantSpec) -> list[str]:
    whats = [w for w, on in (("ns", spec.ns), ("up", spec.up)) if on]
    if spec.ng_source is not None and spec.ng_k > 0:
        whats.append(spec.ng_source)
    return whats


def require_generations(conn: duckdb.DuckDBPyConnection, dataset: str, what: str, variant: str,
                        source: GenerationSource | None = None) -> None:
    """UserError naming the `genre-local generate` command when the variant's generations are missing."""
    view, task, label = _GENERATE_HINT[what]
    sql = f"SELECT count(*) FROM {view} WHERE dataset = ?"
    params: list[object] = [dataset]
    if view == "synthetic_news":
        sql += " AND source_task = ?"
        params.append(task)
    if source is not None:
        sql += " AND model = ? AND prompt_set = ?"
        params += [source.llm, source.prompt_set]
        if what in ("up", "chain"):  # made from profiles: of the source's method too
            sql += " AND method = ?"
            params.append(source.method)
    try:
        count = conn.execute(sql, params).fetchall()[0][0]
    except duckdb.CatalogException:
        count = 0
    if not count:
        by = f" from {source.label}" if source is not None else ""
        raise UserError(
            f"variant '{variant}' needs {label}{by} for dataset '{dataset}', and the store has none; "
            f"run `genre-local generate --dataset {dataset} --task {task}` first"
        )


def _of_source(source: GenerationSource | None, alias: str = "", by_method: bool = False) -> str:
    """SQL condition on the generated rows of `source` (the $llm / $prompt_set parameters);
    `by_method` for rows made from profiles (user_profiles, chain news): of its $method too."""
    if source is None:
        return ""
    prefix = f"{alias}." if alias else ""
    method = f" AND {prefix}method = $method" if by_method else ""
    return f" AND {prefix}model = $llm AND {prefix}prompt_set = $prompt_set{method}"


def _bind(sql: str, params: dict[str, object]) -> dict[str, object]:
    """The parameters `sql` uses (DuckDB refuses unused named parameters)."""
    return {name: value for name, value in params.items() if f"${name}" in sql}


def _source_params(source: GenerationSource | None) -> dict[str, object]:
    return {} if source is None else {"llm": source.llm, "prompt_set": source.prompt_set, "method": source.method}


def content_fingerprint(conn: duckdb.DuckDBPyConnection, dataset: str, spec: VariantSpec,
                        source: GenerationSource | None = None) -> str:
    """A cheap hash of every store row the variant reads (computed inside DuckDB), and of the
    generation source: the encoded-data cache is keyed by it."""
    queries = [
        "SELECT count(*), bit_xor(hash(nid, category, subcategory, title, abstract)) FROM news WHERE dataset = $dataset",
        "SELECT count(*), bit_xor(hash(split, impression_id, user_id, history, candidates, labels)) "
        "FROM impressions WHERE dataset = $dataset",
    ]
    where = _of_source(source)
    if spec.ns:
        queries.append(f"SELECT count(*), bit_xor(hash(nid, title)) FROM enhanced_titles WHERE dataset = $dataset{where}")
    if spec.up:
        queries.append("SELECT count(*), bit_xor(hash(user_id, topics, regions)) FROM user_profiles "
                       f"WHERE dataset = $dataset{_of_source(source, by_method=True)}")
    if spec.ng_source:
        # The chain's news of the source's profile method; the one-pass generator's have none.
        chain_method = "" if source is None else " AND (source_task <> 'chain' OR method = $method)"
        queries.append(
            "SELECT count(*), bit_xor(hash(user_id, nid, position, title, abstract, category, subcategory, source_task)) "
            f"FROM synthetic_news WHERE dataset = $dataset{where}{chain_method}"
        )
    key = f"{dataset}|{spec.key()}" + ("" if source is None else f"|{source.llm}|{source.prompt_set}")
    if source is not None and source.method != DEFAULT_METHOD:  # generated profiles keep their old keys
        key += f"|{source.method}"
    digest = hashlib.sha256(key.encode())
    for sql in queries:
        params = _bind(sql, {"dataset": dataset} | _source_params(source))
        digest.update(repr(conn.execute(sql, params).fetchall()).encode())
    return digest.hexdigest()[:20]


def read_variant(conn: duckdb.DuckDBPyConnection, dataset: str, spec: VariantSpec,
                 source: GenerationSource | None = None) -> VariantRows:
    """Read the variant's rows (read-only queries; the imported tables are never touched), the
    generated ones from `source` alone (None: the only source stored; UserError with several)."""
    if source is None:
        source = resolve_source(conn, dataset, spec, None)
    name = spec.name
    if spec.ns:
        require_generations(conn, dataset, "ns", name, source)
    if spec.up:
        require_generations(conn, dataset, "up", name, source)
    use_synthetic = spec.ng_source is not None and spec.ng_k > 0
    if use_synthetic:
        require_generations(conn, dataset, spec.ng_source, name, source)

    title_sql = "coalesce(e.title, n.title)" if spec.ns else "n.title"
    enhanced_join = (
        f"LEFT JOIN enhanced_titles e ON e.dataset = n.dataset AND e.nid = n.nid{_of_source(source, 'e')}"
        if spec.ns else ""
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
        f" FROM synthetic_news WHERE dataset = $dataset AND source_task = $source"
        f"{_of_source(source, by_method=spec.ng_source == 'chain')}"
        ") WHERE rank <= $k"
    )
    params: dict[str, object] = {"dataset": dataset} | _source_params(source)
    if use_synthetic:
        params |= {"source": spec.ng_source, "k": spec.ng_k}
        news_sql += (
            " UNION ALL SELECT DISTINCT p.nid, p.title, p.abstract, p.category, p.subcategory, NULL "
            f"FROM ({picked_sql}) p WHERE p.nid NOT IN (SELECT nid FROM news WHERE dataset = $dataset)"
        )
    # A fresh cursor: Arrow output needs a connection without a half-read execute() result.
    reader = conn.cursor()
    news_sql = f"SELECT * FROM ({news_sql}) ORDER BY nid"
    news = reader.sql(news_sql, params=_bind(news_sql, params)).to_arrow_table()

    if use_synthetic:
        impressions_sql = (
            "SELECT i.split, i.impression_id, i.user_id, "
            f" CASE WHEN len(i.history) BETWEEN 1 AND {NEW_USER_MAX_HISTORY} AND s.nids IS NOT NULL"
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
    impressions = reader.sql(impressions_sql, params=_bind(impressions_sql, params)).to_arrow_table()
    reader.close()

    profiles: dict[str, tuple[list[str], list[str]]] = {}
    if spec.up:
        for user_id, topics, regions in conn.execute(
            f"SELECT user_id, topics, regions FROM user_profiles WHERE dataset = $dataset{_of_source(source, by_method=True)} "
            "ORDER BY user_id", {"dataset": dataset} | _source_params(source)
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
        count_sql = f"SELECT count(DISTINCT user_id), count(*) FROM ({picked_sql})"
        row = conn.execute(count_sql, _bind(count_sql, params)).fetchall()[0]
        stats["ng_users"], stats["synthetic_news"] = int(row[0]), int(row[1])
    from recsys.features import NewsRows

    rows = NewsRows(
        nids=news.column("nid").to_pylist(),
        titles=news.column("title").to_pylist(),
        abstracts=news.column("abstract").to_pylist(),
        categories=news.column("category").to_pylist(),
        subcategories=news.column("subcategory").to_pylist(),
    )
    return VariantRows(dataset, spec, rows, impressions, profiles, stats, PROFILE_VOCABULARY)


def plan_encoded(conn: duckdb.DuckDBPyConnection, dataset: str, spec: VariantSpec, options: EncodingOptions,
                 cache_dir: Path | None, source: GenerationSource | None = None) -> EncodingPlan:
    """Fingerprint the variant's store rows; read them only when the cache has no file for them."""
    from recsys.data import EncodingPlan, cache_file

    if source is None:
        source = resolve_source(conn, dataset, spec, None)
    fingerprint = content_fingerprint(conn, dataset, spec, source)
    path = None if cache_dir is None else cache_file(cache_dir, dataset, spec, fingerprint, options, PROFILE_VOCABULARY)
    rows = None if path is not None and path.exists() else read_variant(conn, dataset, spec, source)
    return EncodingPlan(fingerprint, path, rows, options)


def fetch_encoded(conn: duckdb.DuckDBPyConnection, dataset: str, spec: VariantSpec, features: tuple[str, ...],
                  title_len: int, abstract_len: int, image_file: Path | None,
                  cache_dir: Path | None, source: GenerationSource | None = None) -> tuple[EncodedDataset, Path | None]:
    """The encoded variant, from the cache when the store content is unchanged (else built and cached)."""
    from recsys.data import EncodingOptions

    options = EncodingOptions(features, title_len, abstract_len, image_file)
    return plan_encoded(conn, dataset, spec, options, cache_dir, source).build()
