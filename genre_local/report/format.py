"""How the report writes numbers in its tables (terminal and HTML alike)."""

from __future__ import annotations

from rich.table import Table
from recsys.catalog import METRIC_LABELS, METRICS

from genre_local.report.runs import Summary


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


UNKNOWN = "unknown"  # a cost no run recorded (imported outputs): never shown as 0


def fmt_known(value: float | int | None, fmt: str) -> str:
    """A cost figure, or "unknown" where no run recorded it (never a 0 that was not measured)."""
    return UNKNOWN if value is None else format(value, fmt)


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def add_metric_columns(table: Table) -> None:
    for metric in METRICS:
        table.add_column(METRIC_LABELS[metric], justify="right")
