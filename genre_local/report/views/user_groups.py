"""Table 6: original vs ng (and chain) for new users (1..5 history items) and warm users, and for
users with an empty history (their own group) where the runs stored it; one row group per
generation source."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from recsys.catalog import NEW_USER_MAX_HISTORY
from rich.table import Table

from genre_local.report import figures
from genre_local.report.comparison import Comparison, compare, comparison_records, comparison_table, seeds_note
from genre_local.report.naming import model_sort_key
from genre_local.report.runs import EMPTY_USERS, NEW_USERS, WARM_USERS, RunIndex, main_key
from genre_local.report.view import Plot, ReportContext, Sources, View, config_sources


def user_group_table(index: RunIndex, features: str, default_k: int) -> list[Comparison]:
    """original vs ng (and chain, each per generation source) per model for new users (1..5
    history items), warm users, and users with an empty history when stored."""
    out = []
    for variant in ("ng", "chain"):
        for model in index.models():
            base = main_key(index, model, "original", features, default_k)
            for source in index.sources(variant):
                other = main_key(index, model, variant, features, default_k, source)
                if base and other:
                    for group in (NEW_USERS, WARM_USERS, EMPTY_USERS):
                        out.extend(compare(index, base, other, group))
    return out


def _compute(ctx: ReportContext) -> list[Comparison]:
    return user_group_table(ctx.index, ctx.features, ctx.k) if ctx.features else []


def _empty_note(ctx: ReportContext) -> str:
    return "needs one model trained on `original` and on `ng` or `chain` (--variant ng)"


def _tables(comparisons: Sequence[Comparison], ctx: ReportContext) -> list[Table]:
    return [comparison_table(f"Table 6: new (1–{NEW_USER_MAX_HISTORY} history items) vs warm users; "
                             f"empty = no history — {ctx.where}", comparisons, show_group=True)]


def _sources(comparisons: Sequence[Comparison]) -> Sources:
    return config_sources([k for c in comparisons for k in (c.base_key, c.other_key)])


def plot_user_groups(comparisons: Sequence[Comparison], dataset: str, path: Path) -> Path:
    """Table 6: AUC gain for new and warm users."""
    auc = [c for c in comparisons if c.metric == "auc"]
    models = sorted({c.model for c in auc}, key=model_sort_key)
    keys = sorted({(c.other_key.variant, c.other_key.source, c.group) for c in auc},
                  key=lambda k: (k[0] != "ng", k[0], k[1], k[2]))
    series: list[figures.Series] = []
    for variant, source, group in keys:
        by_model = {c.model: c for c in auc if (c.other_key.variant, c.other_key.source, c.group) == (variant, source, group)}
        label = f"{variant} · {source}: {group} users" if source else f"{variant}: {group} users"
        series.append((label, [by_model[m].improvement if m in by_model else None for m in models],
                       [None] * len(models)))
    fig = figures.figure(max(6.0, 1.1 * len(models) + 2.5), 4.2)
    ax = fig.add_subplot()
    missing = figures.grouped_bars(ax, [figures.model_label(m) for m in models], series, zero_line=True)
    ax.set_title(f"{dataset}: AUC gain over original, new (1–{NEW_USER_MAX_HISTORY} history) vs warm users (Table 6)")
    ax.set_ylabel(f"AUC(variant) − AUC(original)\n({seeds_note(auc)})")
    ax.set_xlabel("model")
    figures.legend_outside(ax, figures.missing_notes(missing))
    return figures.save(fig, path)


VIEW = View(
    key="user_groups",
    title="Table 6: new vs warm users",
    compute=_compute,
    empty_note=_empty_note,
    csv_file="user_groups.csv",
    records=comparison_records,
    tables=_tables,
    plot=Plot("user_groups.png", plot_user_groups, on_split=True),
    sources=_sources,
)
