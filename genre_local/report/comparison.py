"""Baseline vs variant per model and metric: the shape of Tables 3-6 (CSV and Rich alike)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from recsys.catalog import METRICS
from rich.table import Table

from genre_local.report.format import add_metric_columns, fmt_gain, fmt_p, fmt_summary
from genre_local.report.naming import kind_of
from genre_local.report.runs import ALL_USERS, ConfigKey, RunIndex, Summary, seed_p_value
from genre_local.report.view import SETTINGS_COLUMN, Records, caption_settings


def seed_count(counts: set[int]) -> str:
    """'3 seeds', '1 seed', or '1-5 seeds' when the configurations behind a plot differ."""
    low, high = min(counts), max(counts)
    span = str(low) if low == high else f"{low}-{high}"
    return f"{span} seed{'s' if high != 1 else ''}"


def seeds_note(comparisons: Sequence[Comparison]) -> str:
    """How many seeds the means of `comparisons` average, for a plot's axis: 'mean of 3 seeds',
    'mean of 1-5 seeds' when configurations differ."""
    counts = {s.n for c in comparisons for s in (c.base, c.other)}
    return f"mean of {seed_count(counts)}" if counts else "no seeds"


@dataclass(frozen=True)
class Comparison:
    """Baseline vs variant on one metric of one model (and user group)."""

    model: str
    group: str
    metric: str
    base_key: ConfigKey
    other_key: ConfigKey
    base: Summary
    other: Summary
    # The settings the runs behind base and other differ in (RunIndex.settings_note); None: same
    settings_note: str | None = None

    @property
    def kind(self) -> str:
        return kind_of(self.model)

    @property
    def improvement(self) -> float:
        return self.other.mean - self.base.mean

    @property
    def improvement_pct(self) -> float | None:
        return None if self.base.mean == 0 else 100.0 * self.improvement / self.base.mean

    @property
    def p_value(self) -> float | None:
        return seed_p_value(self.base, self.other)


def compare(index: RunIndex, base: ConfigKey, other: ConfigKey, group: str = ALL_USERS) -> list[Comparison]:
    out = []
    note = index.settings_note([base, other])
    for metric in METRICS:
        b = index.summary(base, metric, group)
        o = index.summary(other, metric, group)
        if b is not None and o is not None:
            out.append(Comparison(base.model, group, metric, base, other, b, o, note))
    return out


def seeds_text(summary: Summary | None) -> str | None:
    return None if summary is None else " ".join(str(s) for s in sorted(summary.values))


def summary_cells(summary: Summary | None) -> tuple[object, object, object]:
    """(mean, std, seeds) CSV cells of one summary; blanks when absent."""
    if summary is None:
        return (None, None, None)
    return (summary.mean, summary.std, seeds_text(summary))


COMPARISON_HEADER = (
    "model", "kind", "variant", "generation_source", "ng_k", "features", "group", "metric",
    "original_mean", "original_std", "original_seeds", "variant_mean", "variant_std", "variant_seeds",
    "improvement", "improvement_pct", "p_value", SETTINGS_COLUMN,
)


def comparison_records(comparisons: Sequence[Comparison]) -> Records:
    return Records(COMPARISON_HEADER, [
        (c.model, c.kind, c.other_key.variant, c.other_key.source, c.other_key.ng_k, c.other_key.features,
         c.group, c.metric,
         *summary_cells(c.base), *summary_cells(c.other), c.improvement, c.improvement_pct, c.p_value,
         c.settings_note)
        for c in comparisons
    ])


def comparison_table(title: str, comparisons: Sequence[Comparison], show_group: bool = False) -> Table:
    """Per model (and group): the original row, the variant row, the gain row, the p-value row."""
    table = Table(title=title, show_header=True, title_justify="left")
    table.add_column("model")
    if show_group:
        table.add_column("users")
    table.add_column("data")
    add_metric_columns(table)
    table.add_column("seeds", justify="right")
    # One block per model (and group): its original row once, then each variant (one per
    # generation source: "original vs ns from LLM A vs ns from LLM B") with its gain.
    blocks: dict[tuple[str, str], dict[tuple[str, str], dict[str, Comparison]]] = defaultdict(lambda: defaultdict(dict))
    for c in comparisons:
        blocks[(c.model, c.group)][(c.other_key.variant, c.other_key.source)][c.metric] = c
    for (model, group), variants in blocks.items():
        lead = [model, group] if show_group else [model]
        blank = [""] * len(lead)
        first = next(iter(next(iter(variants.values())).values()))
        base_cells = {m: None for m in METRICS}
        for by_metric in variants.values():
            base_cells.update({m: c for m, c in by_metric.items() if base_cells.get(m) is None})
        table.add_row(*lead, "original", *[fmt_summary(c.base if c else None) for c in base_cells.values()],
                      str(first.base.n))
        for (variant, source), by_metric in variants.items():
            any_c = next(iter(by_metric.values()))
            k = f" (K={any_c.other_key.ng_k})" if any_c.other_key.ng_k else ""
            by = f" · {source}" if source else ""
            cells = {m: by_metric.get(m) for m in METRICS}
            table.add_row(*blank, f"{variant}{k}{by}", *[fmt_summary(c.other if c else None) for c in cells.values()],
                          str(any_c.other.n))
            table.add_row(*blank, "gain", *["—" if c is None else fmt_gain(c.improvement, c.improvement_pct)
                                              for c in cells.values()], "")
            p_values = [c.p_value if c else None for c in cells.values()]
            if any(p is not None for p in p_values):
                table.add_row(*blank, "p (paired t)", *[fmt_p(p) for p in p_values], "")
        table.rows[-1].end_section = True
    caption_settings(table, list(dict.fromkeys(c.settings_note for c in comparisons if c.settings_note)))
    return table
