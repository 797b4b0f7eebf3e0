"""One dataset's report: every declared view computed, written as CSV and PNG, or skipped with a
note; then one self-contained index.html holding them all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from genre_local.report.html import ViewSection, write_html
from genre_local.report.view import (Records, ReportContext, ReportInputs, Sources, View, caption_settings, plot_label,
                                      report_context, write_csv)
from genre_local.report.views import VIEWS

__all__ = ["HTML_FILE", "Report", "ReportInputs", "ViewResult", "build_report", "render_view"]

HTML_FILE = "index.html"


@dataclass
class ViewResult:
    name: str
    title: str
    rows: int = 0
    files: list[Path] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    note: str | None = None  # why the view was skipped
    records: Records | None = None
    csv_file: Path | None = None
    plot: Path | None = None
    sources: Sources = field(default_factory=Sources)
    # Where runs behind the numbers were trained with other settings (Records.settings_notes)
    settings_notes: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> bool:
        return self.note is not None

    def as_json(self) -> dict:
        if self.skipped:
            return {"title": self.title, "skipped": self.note}
        return {"title": self.title, "rows": self.rows, "files": [str(p) for p in self.files],
                "settings_differ": self.settings_notes}

    def section(self) -> ViewSection:
        return ViewSection(self.name, self.title, self.note, self.tables, self.records,
                           self.csv_file.name if self.csv_file else None, self.plot,
                           self.sources.configs, self.sources.generation_runs, tuple(self.settings_notes))


@dataclass
class Report:
    """What build_report wrote for one dataset."""

    dataset: str
    folder: Path
    views: list[ViewResult]
    html: Path | None  # index.html; None when not asked for or nothing is stored to report
    superseded_runs: int = 0  # stored runs left out: a newer run of the same configuration and seed counts

    @property
    def written(self) -> bool:
        return self.html is not None or any(v.files for v in self.views)


def render_view(view: View, ctx: ReportContext, out_dir: Path, with_plots: bool = True) -> ViewResult:
    """compute -> empty note, or CSV records -> CSV file -> Rich tables -> PNG: the same for every view."""
    result = ViewResult(view.key, view.title)
    rows = view.compute(ctx)
    if not rows:
        result.note = view.empty_note(ctx)
        return result
    result.records = view.records(rows)
    result.rows = len(result.records.rows)
    result.csv_file = write_csv(out_dir / view.csv_file, result.records)
    result.files.append(result.csv_file)
    result.settings_notes = result.records.settings_notes()
    result.tables.extend(view.tables(rows, ctx))
    if result.settings_notes and result.tables and not any(t.caption for t in result.tables):
        # A view whose tables did not caption their own notes (comparison_table does, per table):
        # the last, under all of its numbers.
        caption_settings(result.tables[-1], result.settings_notes)
    if with_plots and view.plot is not None:
        result.plot = view.plot.draw(rows, plot_label(ctx, view.plot), out_dir / view.plot.file)
        result.files.append(result.plot)
    if view.sources is not None:
        result.sources = view.sources(rows)
    return result


def build_report(inputs: ReportInputs, out_dir: Path, with_plots: bool = True, with_html: bool = True,
                 views: Sequence[View] = VIEWS) -> Report:
    """Render every view into `out_dir`; with_html adds index.html (its path is `Report.html`)
    whenever a view or a generation sample has something to show."""
    ctx = report_context(inputs)
    results = [render_view(view, ctx, out_dir, with_plots) for view in views]
    html = None
    if with_html and (any(r.files for r in results) or inputs.samples):
        html = write_html(out_dir / HTML_FILE, ctx, [r.section() for r in results])
    return Report(inputs.dataset, out_dir, results, html, ctx.index.superseded_runs())
