"""Views as Rich tables for the terminal, laid out like the paper's tables."""

from __future__ import annotations

from collections import defaultdict

from rich.table import Table

from genre_local.report.rows import METRIC_LABELS, METRICS, FidelityRow
from genre_local.report.views import (
    AblationRow,
    ChainRow,
    Comparison,
    CostRow,
    CurvePoint,
    Summary,
)

VARIANT_TITLES = {
    "ns": "news summarizer (Table 3)",
    "up": "user profiler (Table 4)",
    "ng": "personalized news generator (Table 5)",
    "chain": "chain-based generator",
}


def variant_title(variant: str) -> str:
    return VARIANT_TITLES.get(variant, "combined schemes")


def fmt_summary(summary: Summary | None) -> str:
    if summary is None:
        return "—"
    if summary.std is None:
        return f"{summary.mean:.4f}"
    return f"{summary.mean:.4f} ± {summary.std:.4f}"


def fmt_signed(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


def fmt_gain(value: float, pct: float | None) -> str:
    text = f"{value:+.4f}"
    return text if pct is None else f"{text} ({pct:+.1f}%)"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _metric_columns(table: Table) -> None:
    for metric in METRICS:
        table.add_column(METRIC_LABELS[metric], justify="right")


def comparison_table(title: str, comparisons: list[Comparison], show_group: bool = False) -> Table:
    """Per model (and group): the original row, the variant row, the gain row, the p-value row."""
    table = Table(title=title, show_header=True, title_justify="left")
    table.add_column("model")
    if show_group:
        table.add_column("users")
    table.add_column("data")
    _metric_columns(table)
    table.add_column("seeds", justify="right")
    blocks: dict[tuple[str, str, str], dict[str, Comparison]] = defaultdict(dict)
    for c in comparisons:
        blocks[(c.model, c.group, c.other_key.variant)][c.metric] = c
    for (model, group, variant), by_metric in blocks.items():
        any_c = next(iter(by_metric.values()))
        lead = [model, group] if show_group else [model]
        k = f" (K={any_c.other_key.ng_k})" if any_c.other_key.ng_k else ""
        cells = {m: by_metric.get(m) for m in METRICS}
        table.add_row(*lead, "original", *[fmt_summary(c.base if c else None) for c in cells.values()],
                      str(any_c.base.n))
        blank = [""] * len(lead)
        table.add_row(*blank, f"{variant}{k}", *[fmt_summary(c.other if c else None) for c in cells.values()],
                      str(any_c.other.n))
        table.add_row(*blank, "gain", *["—" if c is None else fmt_gain(c.improvement, c.improvement_pct)
                                          for c in cells.values()], "")
        p_values = [c.p_value if c else None for c in cells.values()]
        if any(p is not None for p in p_values):
            table.add_row(*blank, "p (paired t)", *[fmt_p(p) for p in p_values], "")
        table.rows[-1].end_section = True
    return table


def curve_table(points: list[CurvePoint]) -> Table:
    table = Table(title="Fig. 7: synthetic news per cold user (ng, K = 0..N)", title_justify="left")
    table.add_column("model")
    table.add_column("K", justify="right")
    _metric_columns(table)
    table.add_column("from")
    cells: dict[tuple[str, int], dict[str, CurvePoint]] = defaultdict(dict)
    for p in points:
        cells[(p.model, p.ng_k)][p.metric] = p
    previous = None
    for (model, k), by_metric in cells.items():
        source = next(iter(by_metric.values())).source
        table.add_row(model if model != previous else "", str(k),
                      *[fmt_summary(by_metric[m].summary if m in by_metric else None) for m in METRICS],
                      "original runs" if source == "original" else f"ng --ng-k {k}")
        previous = model
    return table


def chain_rich(rows: list[ChainRow]) -> Table:
    table = Table(title="Table 7: chain-based (UP → NG) vs one-pass generation", title_justify="left")
    table.add_column("model")
    table.add_column("data")
    _metric_columns(table)
    by_model: dict[str, dict[str, ChainRow]] = defaultdict(dict)
    for r in rows:
        by_model[r.model][r.metric] = r
    for model, by_metric in by_model.items():
        get = [by_metric.get(m) for m in METRICS]
        table.add_row(model, "original", *[fmt_summary(r.original if r else None) for r in get])
        table.add_row("", "one-pass (ng)", *[fmt_summary(r.one_pass if r else None) for r in get])
        table.add_row("", "chain", *[fmt_summary(r.chain if r else None) for r in get])
        table.add_row("", "gain one-pass", *[fmt_signed(r.one_pass_improvement if r else None) for r in get])
        table.add_row("", "gain chain", *[fmt_signed(r.chain_improvement if r else None) for r in get])
        p = [r.chain_vs_one_pass_p if r else None for r in get]
        if any(v is not None for v in p):
            table.add_row("", "p chain vs one-pass", *[fmt_p(v) for v in p])
        table.rows[-1].end_section = True
    return table


def ablation_rich(rows: list[AblationRow]) -> Table:
    table = Table(title="Fig. 6: news features", title_justify="left")
    table.add_column("model")
    table.add_column("data")
    table.add_column("features")
    _metric_columns(table)
    cells: dict[tuple[str, str, str], dict[str, AblationRow]] = defaultdict(dict)
    for r in rows:
        cells[(r.model, r.variant, r.features)][r.metric] = r
    previous = None
    for (model, variant, features), by_metric in cells.items():
        table.add_row(model if model != previous else "", variant, features,
                      *[fmt_summary(by_metric[m].summary if m in by_metric else None) for m in METRICS])
        previous = model
    return table


def cost_rich(rows: list[CostRow]) -> list[Table]:
    """Two tables, so each fits a terminal: what generation cost, then what it bought (CCR)."""
    unit = rows[0].unit if rows else "engine-hour"
    cost_label = "cost" if unit == "price" else "engine h"
    spent = Table(title="Table 8a: generation cost per GENRE scheme", title_justify="left")
    for name in ("scheme", "tasks", "requests", "valid", "tokens in", "tokens out", "engine s", "wall+start s",
                 cost_label):
        spent.add_column(name, justify="left" if name in ("scheme", "tasks") else "right")
    for r in rows:
        written = r.valid + r.invalid
        valid = f"{100.0 * r.valid / written:.1f}%" if written else "—"
        spent.add_row(r.scheme, "+".join(r.tasks), f"{r.requests:,}", valid, f"{r.prompt_tokens:,}",
                      f"{r.completion_tokens:,}", f"{r.engine_seconds:,.1f}", f"{r.wall_seconds:,.1f}",
                      f"{r.cost_units:.4g}")
    per = "unit of price" if unit == "price" else "engine-hour (no --price-per-hour stored)"
    gain = Table(title=f"Table 8b: cost conversion rate, CCR = AUC gain per {per}", title_justify="left")
    for name in ("scheme", "variant", "AUC gain matching", "CCR matching", "AUC gain ranking", "CCR ranking"):
        gain.add_column(name, justify="left" if name in ("scheme", "variant") else "right")
    for r in rows:
        gain.add_row(
            r.scheme, r.variant,
            fmt_signed(r.matching_improvement) + _models(r.matching_models),
            fmt_ratio(r.matching_ccr),
            fmt_signed(r.ranking_improvement) + _models(r.ranking_models),
            fmt_ratio(r.ranking_ccr),
        )
    return [spent, gain]


def _models(count: int) -> str:
    return "" if not count else f" ({count} model{'s' if count > 1 else ''})"


def fidelity_rich(rows: list[FidelityRow]) -> Table:
    table = Table(title="Profile fidelity (user profiler vs synthetic truth)", title_justify="left")
    for name in ("run", "LLM", "round", "topic P@3", "topic recall", "region acc", "users"):
        table.add_column(name, justify="left" if name in ("run", "LLM") else "right")
    for r in rows:
        table.add_row(r.run_id, r.model, str(r.round), f"{r.precision_at_3:.3f}", f"{r.recall:.3f}",
                      f"{r.region_accuracy:.3f}", f"{r.users:,}")
    return table
