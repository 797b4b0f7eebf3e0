"""`genre-local report`: GENRE's tables and figures (paper §4) from what the store holds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from genre_local.cli_support import app_context, command_errors, emit_json, stdout_console
from genre_local.data.names import check_dataset_name
from genre_local.errors import UserError

SAMPLES_PER_LLM = 5  # generation samples per task and LLM in index.html
SAMPLE_SEED = 0  # fixed, so a rerun of the report shows the same samples


@command_errors
def report(
    ctx: typer.Context,
    dataset: Annotated[
        Optional[str],
        typer.Option("--dataset", help="Dataset to report on (default: every dataset in the store).", show_default=False),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", help="Report folder: with --dataset the files go there, otherwise one subfolder per "
                     "dataset (default: paths.reports_dir next to the store, one subfolder per dataset).",
                     show_default=False),
    ] = None,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Write tables and CSV files only.")] = False,
    html: Annotated[bool, typer.Option("--html/--no-html", help="Also write index.html: every view, the runs "
                                       "behind each number, cost and generation samples in one offline page.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Also print one JSON object as the last stdout line.")] = False,
) -> None:
    """Render the paper's tables and plots from stored runs: Rich tables, CSV files, PNG plots and index.html."""
    from rich.text import Text

    from genre_local.config import resolve_relative
    from genre_local.report.build import ReportInputs, build_report
    from genre_local.report.samples import collect_all_samples
    from genre_local.store.enrichment import load_enrichment_stats
    from genre_local.store.results import (
        load_epoch_rows,
        load_fidelity,
        load_generation_runs,
        load_metric_rows,
        load_variant_sources,
    )

    context = app_context(ctx)
    if dataset is not None:
        check_dataset_name(dataset, "--dataset")  # it becomes the report's folder name
    # Read everything, then close: a report must never hold the store while it draws. Read-only:
    # a report never creates a store nor changes one.
    with context.open_store(read_only=True) as store:
        if dataset is not None:
            store.require_dataset(dataset)
            names = [dataset]
        else:
            names = store.dataset_names()
            if not names:
                raise UserError(
                    f"store {context.db_path} holds no dataset; import one with `genre-local data import SRC --name NAME`"
                )
        inputs = [
            ReportInputs(
                dataset=name,
                metrics=load_metric_rows(store, name),
                generation_runs=load_generation_runs(store, name),
                fidelity=load_fidelity(store, name),
                default_features=context.config.train.features,
                default_k=context.config.train.ng_k,
                samples=collect_all_samples(store, name, SAMPLES_PER_LLM, SAMPLE_SEED) if html else [],
                variant_sources=load_variant_sources(store, name),
                epochs=load_epoch_rows(store, name),
                enrichment=load_enrichment_stats(store.conn, name),
            )
            for name in names
        ]

    root = (out if out is not None else resolve_relative(context.db_path, context.config.paths.reports_dir)).absolute()
    if root.exists() and not root.is_dir():
        raise UserError(f"--out {root} is a file; pass a folder")
    console = stdout_console(markup=False)  # the tables hold labels like "[title,category]"
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped into a file, Rich would squeeze the tables into 80 columns; the report's
        # tables need about 100.
        console.width = 120
    summary: dict[str, dict] = {}
    for item in inputs:
        # An explicit --out for one named dataset is the folder itself (what a user typing both
        # expects); otherwise datasets get their own subfolders so reports never overwrite each other.
        folder = (out if out is not None and dataset is not None else _dataset_folder(root, item.dataset)).absolute()
        built = build_report(item, folder, with_plots=not no_plots, with_html=html)
        console.rule(f"GENRE report: {item.dataset}")
        for result in built.views:
            if result.skipped:
                console.print(Text(f"skipped {result.title}: {result.note}", style="dim"))
                continue
            for table in result.tables:
                console.print(table)
        if built.superseded_runs:
            console.print(Text(f"{built.superseded_runs} older run(s) left out: a seed trained more than once "
                               "(same model, variant, K, features and source) counts its newest run, never two",
                               style="dim"))
        written = built.written
        if written:
            console.print(f"report for {item.dataset}: {folder}", highlight=False)
            if built.html is not None:
                console.print(f"open in a browser: {built.html}", highlight=False)
        else:
            console.print(f"report for {item.dataset}: nothing stored to report yet, no files written", highlight=False)
        summary[item.dataset] = {
            "dir": str(folder) if written else None,
            "html": str(built.html) if built.html else None,
            "views": {r.name: r.as_json() for r in built.views},
            "superseded_runs": built.superseded_runs,
        }
    if as_json:
        emit_json({"out": str(root), "datasets": summary})


def _dataset_folder(root: Path, name: str) -> Path:
    """`root/name`, for a name that is one safe path component (a store written before names were
    checked may hold any text), so no report is ever written outside `root`."""
    check_dataset_name(name, "dataset in the store")
    return root / name
