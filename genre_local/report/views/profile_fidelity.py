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


def _records(rows: Sequence[FidelityRow]) -> Records:
    return Records(
        ("run_id", "model", "round", "precision_at_3", "recall", "region_accuracy", "users", "created_at"),
        [(r.run_id, r.model, r.round, r.precision_at_3, r.recall, r.region_accuracy, r.users, r.created_at)
         for r in rows],
    )


def _tables(rows: Sequence[FidelityRow], ctx: ReportContext) -> list[Table]:
    table = Table(title="Profile fidelity (user profiler vs synthetic truth)", title_justify="left")
    for name in ("run", "LLM", "round", "topic P@3", "topic recall", "region acc", "users"):
        table.add_column(name, justify="left" if name in ("run", "LLM") else "right")
    for r in rows:
        table.add_row(r.run_id, r.model, str(r.round), f"{r.precision_at_3:.3f}", f"{r.recall:.3f}",
                      f"{r.region_accuracy:.3f}", f"{r.users:,}")
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
