"""Fig. 6: the news-feature ablation, every (model, variant) trained with several feature sets."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from recsys.catalog import METRICS
from rich.table import Table

from genre_local.report import figures
from genre_local.report.comparison import summary_cells
from genre_local.report.format import add_metric_columns, fmt_summary
from genre_local.report.naming import kind_of, model_sort_key
from genre_local.report.runs import ConfigKey, RunIndex, Summary, main_key
from genre_local.report.view import SETTINGS_COLUMN, Plot, Records, ReportContext, View, config_sources


@dataclass(frozen=True)
class AblationRow:
    model: str
    variant: str
    features: str
    metric: str
    summary: Summary
    key: ConfigKey | None = None  # the configuration the row was read from
    settings_note: str | None = None  # the settings the runs of its feature sets differ in; None: the same

    @property
    def source(self) -> str:
        """The generation source the variant's runs read ("" for original or none recorded)."""
        return self.key.source if self.key is not None else ""

    @property
    def data(self) -> str:
        return f"{self.variant} · {self.source}" if self.source else self.variant


def feature_ablation(index: RunIndex, default_k: int) -> list[AblationRow]:
    """Every (model, variant) trained with two or more feature sets, each set's metrics."""
    out = []
    for model in index.models():
        for variant in index.variants():
            feature_sets = sorted({k.features for k in index.runs if (k.model, k.variant) == (model, variant)},
                                  key=lambda f: (len(f.split(",")), f))
            if len(feature_sets) < 2:
                continue
            for source in index.sources(variant):  # one row group per generation source
                keys = [main_key(index, model, variant, features, default_k, source) for features in feature_sets]
                note = index.settings_note(keys)
                for features, key in zip(feature_sets, keys):
                    if key is None:
                        continue
                    for metric in METRICS:
                        summary = index.summary(key, metric)
                        if summary is not None:
                            out.append(AblationRow(model, variant, features, metric, summary, key, note))
    return out


def _compute(ctx: ReportContext) -> list[AblationRow]:
    return feature_ablation(ctx.index, ctx.k)


def _empty_note(ctx: ReportContext) -> str:
    return "needs one model and variant trained with two or more --features sets"


def _records(rows: Sequence[AblationRow]) -> Records:
    return Records(
        ("model", "kind", "variant", "generation_source", "features", "metric", "mean", "std", "seeds", SETTINGS_COLUMN),
        [(r.model, kind_of(r.model), r.variant, r.source, r.features, r.metric, *summary_cells(r.summary),
          r.settings_note)
         for r in rows],
    )


def _tables(rows: Sequence[AblationRow], ctx: ReportContext) -> list[Table]:
    table = Table(title="Fig. 6: news features", title_justify="left")
    table.add_column("model")
    table.add_column("data")
    table.add_column("features")
    add_metric_columns(table)
    cells: dict[tuple[str, str, str], dict[str, AblationRow]] = defaultdict(dict)
    for r in rows:
        cells[(r.model, r.data, r.features)][r.metric] = r
    previous = None
    for (model, data, features), by_metric in cells.items():
        table.add_row(model if model != previous else "", data, features,
                      *[fmt_summary(by_metric[m].summary if m in by_metric else None) for m in METRICS])
        previous = model
    return [table]


def plot_ablation(rows: Sequence[AblationRow], dataset: str, path: Path) -> Path:
    """Fig. 6: AUC per model for each (variant, feature set) trained."""
    auc = [r for r in rows if r.metric == "auc"]
    models = sorted({r.model for r in auc}, key=model_sort_key)
    combos = sorted({(r.data, r.features) for r in auc}, key=lambda c: (c[0] != "original", c[0], len(c[1]), c[1]))
    cells = {(r.model, r.data, r.features): r.summary for r in auc}
    series: list[figures.Series] = []
    for variant, features in combos:
        got = [cells.get((m, variant, features)) for m in models]
        series.append((f"{variant}: {features}", [s.mean if s else None for s in got],
                       [s.std if s else None for s in got]))
    fig = figures.figure(max(6.0, 1.3 * len(models) + 4.0), 4.2)
    ax = fig.add_subplot()
    figures.grouped_bars(ax, [figures.model_label(m) for m in models], series, zero_line=False)
    ax.set_title(f"{dataset}: news features (Fig. 6)")
    ax.set_ylabel("AUC (mean ± std over seeds)")
    ax.set_xlabel("model")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title="variant: features",
              title_fontsize=8)
    return figures.save(fig, path)


VIEW = View(
    key="feature_ablation",
    title="Fig. 6: news features",
    compute=_compute,
    empty_note=_empty_note,
    csv_file="feature_ablation.csv",
    records=_records,
    tables=_tables,
    plot=Plot("feature_ablation.png", plot_ablation, on_split=True),
    sources=lambda rows: config_sources([r.key for r in rows]),
)
