"""Profile fidelity: the user profiler's topics and regions scored against the synthetic truth."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from genre_local.report.view import Records, ReportContext, Sources, View
from genre_local.store.results import FidelityRow


def fidelity_rows(rows: list[FidelityRow]) -> list[FidelityRow]:
    """Profile fidelity runs, oldest first (each generate --task profile round stores one)."""
    return sorted(rows, key=lambda r: (r.created_at is not None, r.created_at or 0, r.run_id, r.round))


def _compute(ctx: ReportContext) -> list[FidelityRow]:
    return fidelity_rows(ctx.inputs.fidelity)


def _empty_note(ctx: ReportContext) -> str:
    return "no profile fidelity stored (needs synthetic truth and genre-local generate --task profile)"


_METRICS = ("precision_at_3", "recall", "region_accuracy")


def _ratio(measured: float, chance: float | None) -> float | None:
    """Measured / chance; None where the row has no chance level (stored before migration 007)."""
    if chance is None:
        return None
    if chance > 0:
        return measured / chance
    return float("inf") if measured > 0 else 1.0


def _records(rows: Sequence[FidelityRow]) -> Records:
    columns = ["run_id", "model", "generation_source", "round"]
    for metric in _METRICS:
        columns += [metric, f"chance_{metric}", f"{metric}_ratio_to_chance"]
    columns += ["users", "created_at"]
    values = []
    for r in rows:
        row: list = [r.run_id, r.model, r.source, r.round]
        for metric in _METRICS:
            measured, chance = getattr(r, metric), getattr(r, f"chance_{metric}")
            row += [measured, chance, _ratio(measured, chance)]
        values.append(tuple(row + [r.users, r.created_at]))
    return Records(tuple(columns), values)


def _cell(measured: float, chance: float | None) -> str:
    """0.290 (chance 0.120, 2.4x); a row stored without its chance level shows the value alone."""
    ratio = _ratio(measured, chance)
    if chance is None or ratio is None:
        return f"{measured:.3f}"
    return f"{measured:.3f} (chance {chance:.3f}, {ratio:.1f}x)"


def _tables(rows: Sequence[FidelityRow], ctx: ReportContext) -> list[Table]:
    table = Table(
        title="Profile fidelity (user profiler vs synthetic truth; chance = random profiles of the same sizes)",
        title_justify="left",
    )
    for name in ("run", "source", "round", "topic P@3", "topic recall", "region acc", "users"):
        table.add_column(name, justify="left" if name in ("run", "source") else "right")
    for r in rows:
        table.add_row(r.run_id, r.source, str(r.round),
                      *(_cell(getattr(r, m), getattr(r, f"chance_{m}")) for m in _METRICS), f"{r.users:,}")
    return [table]


VIEW = View(
    key="profile_fidelity",
    title="Profile fidelity",
    compute=_compute,
    empty_note=_empty_note,
    csv_file="profile_fidelity.csv",
    records=_records,
    tables=_tables,
    sources=lambda rows: Sources(generation_runs=tuple(dict.fromkeys(r.run_id for r in rows))),
)
