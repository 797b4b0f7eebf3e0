"""What a report view is: one declared unit per paper table or figure.

A `View` names its key and title, computes its rows as a pure function of the dataset's
stored rows (`ReportContext`), says why it is empty, and turns its rows into CSV records, Rich
tables, an optional PNG and the runs behind its numbers. build.py renders every declared view the same way (CSV, terminal, PNG, HTML), so adding a
paper table means adding one module under report/views/ and listing it there.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from rich.table import Table

from genre_local.files import write_atomically
from genre_local.report.runs import ConfigKey, RunIndex, index_runs, main_features
from genre_local.report.samples import SampleSet
from genre_local.store.enrichment import EnrichmentStats
from genre_local.store.results import EpochRow, FidelityRow, GenerationRunRow, MetricRow, VariantSource

Row = TypeVar("Row")


@dataclass(frozen=True)
class ReportInputs:
    """One dataset's stored rows, as store/results.py reads them, and the config's defaults."""

    dataset: str
    metrics: list[MetricRow]
    generation_runs: list[GenerationRunRow]
    fidelity: list[FidelityRow]
    default_features: str  # train.features of the config: the feature set of the main tables
    default_k: int  # train.ng_k of the config: the K of the main ng/chain tables
    samples: list[SampleSet] = field(default_factory=list)  # per generation task and LLM (HTML report)
    variant_sources: list[VariantSource] = field(default_factory=list)  # the LLMs behind each variant's data
    epochs: list[EpochRow] = field(default_factory=list)  # every run's epochs (the epoch-curves view)
    enrichment: list[EnrichmentStats] = field(default_factory=list)  # per generation source (Table 1 view)


@dataclass(frozen=True)
class ReportContext:
    """What every view computes from: the inputs, their runs indexed once, the main settings."""

    inputs: ReportInputs
    index: RunIndex
    features: str | None  # the feature set of the main tables; None without runs
    k: int

    @property
    def dataset(self) -> str:
        return self.inputs.dataset

    @property
    def where(self) -> str:
        """Table-title suffix naming what the numbers are: dataset, split, feature set."""
        if not self.features:
            return self.dataset
        return f"{self.dataset}, {self.index.split_label()} split, features {self.features}"

    @property
    def no_runs_note(self) -> str:
        return (f"no training runs stored for dataset '{self.dataset}' "
                f"(genre-local train --dataset {self.dataset} ...)")


def report_context(inputs: ReportInputs) -> ReportContext:
    index = index_runs(inputs.metrics)
    return ReportContext(inputs, index, main_features(index, inputs.default_features), inputs.default_k)


@dataclass(frozen=True)
class Records:
    """A view flattened for CSV: one header, one row per (model, metric, ...), numbers unrounded."""

    header: tuple[str, ...]
    rows: list[tuple[object, ...]]

    def settings_notes(self) -> list[str]:
        """The distinct SETTINGS_COLUMN notes of the rows, in order: where the runs behind a
        number were trained with other settings. Empty for a view without the column."""
        if SETTINGS_COLUMN not in self.header:
            return []
        at = self.header.index(SETTINGS_COLUMN)
        return list(dict.fromkeys(str(row[at]) for row in self.rows if row[at]))


# The CSV column of the views that compare runs: empty where every run behind the row's numbers
# was trained with the same settings, else which settings differ (RunIndex.settings_note), so a
# script keeps the comparable rows by filtering on it being empty.
SETTINGS_COLUMN = "settings_differ"


def caption_settings(table: Table, notes: Sequence[str]) -> None:
    """Caption `table` with `notes` (Records.settings_notes of its rows): the runs behind its
    numbers were trained with other settings, so they do not compare like with like. None: no caption."""
    if notes:
        table.caption = "\n".join(["not like for like, runs behind these numbers were trained with other settings:",
                                   *(f"  {note}" for note in notes)])
        table.caption_justify, table.caption_style = "left", "yellow"


def write_csv(path: Path, records: Records) -> Path:
    def write(target: Path) -> None:
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(records.header)
            for row in records.rows:
                writer.writerow(["" if v is None else v for v in row])

    return write_atomically(path, write)


@dataclass(frozen=True)
class Plot(Generic[Row]):
    file: str  # PNG file name in the report folder
    draw: Callable[[Sequence[Row], str, Path], Path]  # (rows, title label, path) -> path written
    # The plot shows metrics of the reported split: its title label names the split beside the
    # dataset, as the view's tables do (a PNG is often shared without its report).
    on_split: bool = False


def plot_label(ctx: ReportContext, plot: Plot) -> str:
    """What a plot's title starts with: the dataset, and the reported split where it shows one."""
    return f"{ctx.dataset}, {ctx.index.split_label()} split" if plot.on_split else ctx.dataset


@dataclass(frozen=True)
class Sources:
    """The stored runs behind a view's numbers, for the HTML report's links."""

    configs: tuple[ConfigKey, ...] = ()  # training configurations (their seeds are runs)
    generation_runs: tuple[str, ...] = ()  # generation_runs.run_id values


def config_sources(keys: Sequence[ConfigKey | None]) -> Sources:
    """Sources naming each configuration once, in first-seen order."""
    return Sources(configs=tuple(dict.fromkeys(k for k in keys if k is not None)))


@dataclass(frozen=True)
class View(Generic[Row]):
    key: str  # the view's name in --json output
    title: str
    compute: Callable[[ReportContext], Sequence[Row]]  # pure; empty when the store lacks the runs
    empty_note: Callable[[ReportContext], str]  # one line: what to run so the view appears
    csv_file: str
    records: Callable[[Sequence[Row]], Records]
    tables: Callable[[Sequence[Row], ReportContext], list[Table]]
    plot: Plot[Row] | None = None
    sources: Callable[[Sequence[Row]], Sources] | None = None  # the runs behind the numbers
