"""One dataset's report: every declared view computed, written as CSV and PNG, or skipped with a note."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from genre_local.report.view import ReportContext, ReportInputs, View, report_context, write_csv
from genre_local.report.views import VIEWS

__all__ = ["ReportInputs", "ViewResult", "build_report", "render_view"]


@dataclass
class ViewResult:
    name: str
    title: str
    rows: int = 0
    files: list[Path] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    note: str | None = None  # why the view was skipped

    @property
    def skipped(self) -> bool:
        return self.note is not None

    def as_json(self) -> dict:
        if self.skipped:
            return {"title": self.title, "skipped": self.note}
        return {"title": self.title, "rows": self.rows, "files": [str(p) for p in self.files]}


def render_view(view: View, ctx: ReportContext, out_dir: Path, with_plots: bool = True) -> ViewResult:
    """compute -> empty note, or CSV records -> CSV file -> Rich tables -> PNG: the same for every view."""
    result = ViewResult(view.key, view.title)
    rows = view.compute(ctx)
    if not rows:
        result.note = view.empty_note(ctx)
        return result
    records = view.records(rows)
    result.rows = len(records.rows)
    result.files.append(write_csv(out_dir / view.csv_file, records))
    result.tables.extend(view.tables(rows, ctx))
    if with_plots and view.plot is not None:
        result.files.append(view.plot.draw(rows, ctx.dataset, out_dir / view.plot.file))
    return result


def build_report(inputs: ReportInputs, out_dir: Path, with_plots: bool = True,
                 views: Sequence[View] = VIEWS) -> list[ViewResult]:
    ctx = report_context(inputs)
    return [render_view(view, ctx, out_dir, with_plots) for view in views]
