"""Tables 3-5 (and combinations): original vs each variant, per model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from genre_local.report import figures
from genre_local.report.comparison import Comparison, compare, comparison_records, comparison_table, seeds_note
from genre_local.report.naming import model_sort_key
from genre_local.report.runs import RunIndex, main_key
from genre_local.report.view import Plot, Records, ReportContext, Sources, View, config_sources

VARIANT_TITLES = {
    "ns": "news summarizer (Table 3)",
    "up": "user profiler (Table 4)",
    "ng": "personalized news generator (Table 5)",
    "chain": "chain-based generator",
}


def variant_title(variant: str) -> str:
    return VARIANT_TITLES.get(variant, "combined schemes")


@dataclass(frozen=True)
class VariantTable:
    variant: str
    comparisons: list[Comparison]

    def models(self) -> list[str]:
        return sorted({c.model for c in self.comparisons}, key=model_sort_key)


def variant_tables(index: RunIndex, features: str, default_k: int) -> list[VariantTable]:
    """One table per stored variant: every model that has it and `original` (Tables 3, 4, 5),
    with one row group per generation source the variant's runs read."""
    tables = []
    for variant in index.variants():
        if variant == "original":
            continue
        comparisons: list[Comparison] = []
        for model in index.models():
            base = main_key(index, model, "original", features, default_k)
            for source in index.sources(variant):
                other = main_key(index, model, variant, features, default_k, source)
                if base and other:
                    comparisons.extend(compare(index, base, other))
        if comparisons:
            tables.append(VariantTable(variant, comparisons))
    return tables


def _compute(ctx: ReportContext) -> list[VariantTable]:
    return variant_tables(ctx.index, ctx.features, ctx.k) if ctx.features else []


def _empty_note(ctx: ReportContext) -> str:
    if not ctx.index.runs:
        return ctx.no_runs_note
    return ("needs one model trained on `original` and on another variant "
            f"(genre-local train --dataset {ctx.dataset} --model M --variant ns|up|ng|chain)")


def _records(tables: Sequence[VariantTable]) -> Records:
    return comparison_records([c for t in tables for c in t.comparisons])


def _tables(tables: Sequence[VariantTable], ctx: ReportContext) -> list[Table]:
    return [comparison_table(f"original vs {t.variant}: {variant_title(t.variant)} — {ctx.where}", t.comparisons)
            for t in tables]


def _sources(tables: Sequence[VariantTable]) -> Sources:
    return config_sources([k for t in tables for c in t.comparisons for k in (c.base_key, c.other_key)])


def plot_variants(tables: Sequence[VariantTable], dataset: str, path: Path) -> Path:
    """Tables 3-5 at a glance: AUC gain of each variant over original, per model."""
    models = sorted({c.model for t in tables for c in t.comparisons}, key=model_sort_key)
    series: list[figures.Series] = []
    for table in tables:
        for source in dict.fromkeys(c.other_key.source for c in table.comparisons):
            by_model = {c.model: c for c in table.comparisons if c.metric == "auc" and c.other_key.source == source}
            label = f"{table.variant} · {source}" if source else table.variant
            series.append((label, [by_model[m].improvement if m in by_model else None for m in models],
                           [None] * len(models)))
    auc = [c for t in tables for c in t.comparisons if c.metric == "auc"]
    fig = figures.figure(max(6.0, 1.1 * len(models) + 2.5), 4.2)
    ax = fig.add_subplot()
    missing = figures.grouped_bars(ax, [figures.model_label(m) for m in models], series, zero_line=True)
    ax.set_title(f"{dataset}: AUC gain over original per model (Tables 3–5)")
    ax.set_ylabel(f"AUC(variant) − AUC(original)\n({seeds_note(auc)})")
    ax.set_xlabel("model")
    figures.legend_outside(ax, figures.missing_notes(missing))
    return figures.save(fig, path)


VIEW = View(
    key="variants",
    title="Tables 3-5: original vs each variant",
    compute=_compute,
    empty_note=_empty_note,
    csv_file="variants.csv",
    records=_records,
    tables=_tables,
    plot=Plot("variants_auc.png", plot_variants, on_split=True),
    sources=_sources,
)
