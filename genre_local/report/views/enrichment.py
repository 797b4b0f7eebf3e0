"""Table 1 of the enriched data: per generation source (LLM, prompt set, profile method), what it added to the
dataset: enhanced-title lengths vs the originals (words), profile coverage (users with a valid
profile = the Chain cohort, mean topics and regions), synthetic news (users served, news per user)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from genre_local.report.view import Records, ReportContext, View
from genre_local.store.enrichment import EnrichmentStats

_FIELDS = ("news", "enhanced_titles", "original_words_mean", "original_words_median", "enhanced_words_mean",
           "enhanced_words_median", "users_with_history", "profiled_users", "valid_profile_users", "mean_topics",
           "mean_regions", "news_users", "news_items", "news_per_user", "chain_users", "chain_items", "chain_per_user")


def _compute(ctx: ReportContext) -> list[EnrichmentStats]:
    return list(ctx.inputs.enrichment)


def _empty_note(ctx: ReportContext) -> str:
    return f"no valid generation stored for dataset '{ctx.dataset}' (genre-local generate --dataset {ctx.dataset})"


def _records(rows: Sequence[EnrichmentStats]) -> Records:
    return Records(("dataset", "generation_source", *_FIELDS),
                   [(r.dataset, r.label, *(getattr(r, f) for f in _FIELDS)) for r in rows])


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _share(part: int, whole: int) -> str:
    return f"{part:,}" + (f" ({100 * part / whole:.0f}%)" if whole else "")


def _words(mean: float | None, median: float | None) -> str:
    return "—" if mean is None else f"{mean:.1f} / {_num(median)}"


def _tables(rows: Sequence[EnrichmentStats], ctx: ReportContext) -> list[Table]:
    table = Table(title=f"Table 1: the enriched data per generation source — {ctx.dataset}", title_justify="left")
    for name in ("generation source", "enhanced titles", "title words, original (mean / median)",
                 "title words, enhanced (mean / median)", "valid profiles (Chain cohort)", "topics / profile",
                 "regions / profile", "ng: users (news / user)", "chain: users (news / user)"):
        table.add_column(name, justify="left" if name == "generation source" else "right")
    for r in rows:
        table.add_row(
            r.label, _share(r.enhanced_titles, r.news), _words(r.original_words_mean, r.original_words_median),
            _words(r.enhanced_words_mean, r.enhanced_words_median),
            _share(r.valid_profile_users, r.users_with_history) + f" of {r.profiled_users:,} profiled",
            _num(r.mean_topics, 2), _num(r.mean_regions, 2),
            f"{r.news_users:,} ({_num(r.news_per_user, 2)})", f"{r.chain_users:,} ({_num(r.chain_per_user, 2)})",
        )
    table.caption = ("Title words: over the news that have an enhanced title. Valid profile: names at least one "
                     "of GENRE's topics; % of users with a history. Latest valid output per input.")
    return [table]


VIEW = View(
    key="enrichment",
    title="Table 1: the enriched data",
    compute=_compute,
    empty_note=_empty_note,
    csv_file="enrichment.csv",
    records=_records,
    tables=_tables,
)
