"""Fig. 7: the metrics against the number of synthetic news per cold user (K)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from recsys.catalog import METRIC_LABELS, METRICS
from rich.table import Table

from genre_local.report import figures
from genre_local.report.comparison import seed_count, summary_cells
from genre_local.report.format import add_metric_columns, fmt_summary
from genre_local.report.naming import kind_of, model_sort_key
from genre_local.report.runs import ConfigKey, RunIndex, Summary
from genre_local.report.view import SETTINGS_COLUMN, Plot, Records, ReportContext, View, config_sources


@dataclass(frozen=True)
class CurvePoint:
    model: str
    ng_k: int
    metric: str
    summary: Summary
    source: str  # 'ng' or 'original' (K = 0 taken from the original runs)
    key: ConfigKey | None = None  # the configuration the point was read from
    generation_source: str = ""  # the LLM/prompt set the ng runs read: one curve per source
    settings_note: str | None = None  # the settings the runs of the curve's points differ in; None: the same

    @property
    def line(self) -> str:
        """The curve's legend label: the model, and the generation source when one is recorded."""
        return self.model.upper() + (f" · {self.generation_source}" if self.generation_source else "")


def ng_k_curve(index: RunIndex, features: str) -> list[CurvePoint]:
    """Metric vs K for the one-pass `ng` variant, one curve per model and generation source; K=0
    is `ng --ng-k 0` when stored, else original.

    Only curves with at least two K values appear: a single point is no curve.
    """
    out: list[CurvePoint] = []
    for model in index.models():
        for generation_source in index.sources("ng"):
            points: dict[int, tuple[ConfigKey, str]] = {}
            for key in index.runs:
                if (key.model, key.variant, key.features, key.source) == (model, "ng", features, generation_source):
                    points[key.ng_k] = (key, "ng")
            original = ConfigKey(model, "original", 0, features)
            if 0 not in points and original in index.runs:
                points[0] = (original, "original")
            if len(points) < 2:
                continue
            note = index.settings_note(key for key, _ in points.values())
            for k in sorted(points):
                key, source = points[k]
                for metric in METRICS:
                    summary = index.summary(key, metric)
                    if summary is not None:
                        out.append(CurvePoint(model, k, metric, summary, source, key, generation_source, note))
    return out


def _compute(ctx: ReportContext) -> list[CurvePoint]:
    return ng_k_curve(ctx.index, ctx.features) if ctx.features else []


def _empty_note(ctx: ReportContext) -> str:
    return "needs one model trained on `ng` with two or more --ng-k values (`original` counts as K=0)"


def _records(points: Sequence[CurvePoint]) -> Records:
    return Records(
        ("model", "kind", "ng_k", "source", "generation_source", "metric", "mean", "std", "seeds", SETTINGS_COLUMN),
        [(p.model, kind_of(p.model), p.ng_k, p.source, p.generation_source, p.metric, *summary_cells(p.summary),
          p.settings_note)
         for p in points],
    )


def _tables(points: Sequence[CurvePoint], ctx: ReportContext) -> list[Table]:
    table = Table(title="Fig. 7: synthetic news per cold user (ng, K = 0..N)", title_justify="left")
    table.add_column("model")
    table.add_column("K", justify="right")
    add_metric_columns(table)
    table.add_column("from")
    cells: dict[tuple[str, int], dict[str, CurvePoint]] = defaultdict(dict)
    for p in points:
        cells[(p.line, p.ng_k)][p.metric] = p
    previous = None
    for (line, k), by_metric in cells.items():
        source = next(iter(by_metric.values())).source
        table.add_row(line if line != previous else "", str(k),
                      *[fmt_summary(by_metric[m].summary if m in by_metric else None) for m in METRICS],
                      "original runs" if source == "original" else f"ng --ng-k {k}")
        previous = line
    return [table]


def plot_ng_k(points: Sequence[CurvePoint], dataset: str, path: Path,
              metrics: Sequence[str] = ("auc", "ndcg@10")) -> Path:
    """Fig. 7: metric vs number of synthetic news per cold user, one line per model."""
    return figures.save(draw_ng_k(points, dataset, metrics), path)


def draw_ng_k(points: Sequence[CurvePoint], dataset: str, metrics: Sequence[str] = ("auc", "ndcg@10")):
    """The figure of Fig. 7. Its axes say how many seeds a point averages (the bars are their
    std), and the AUC panel marks chance (0.5): a generator that hurts can sink below it."""
    fig = figures.figure(5.0 * len(metrics) + 1.5, 4.0)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    lines = sorted({(p.model, p.line) for p in points}, key=lambda m: (model_sort_key(m[0]), m[1]))
    ks = sorted({p.ng_k for p in points})
    for ax, metric in zip(axes, metrics):
        drawn = []
        for _, label in lines:
            line = sorted((p for p in points if p.line == label and p.metric == metric), key=lambda p: p.ng_k)
            if not line:
                continue
            drawn += line
            ax.errorbar([p.ng_k for p in line], [p.summary.mean for p in line],
                        yerr=[p.summary.std or 0.0 for p in line], marker="o", capsize=3, label=label)
        if metric == "auc":
            ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
            ax.text(0.99, 0.5, "chance (AUC 0.5)", transform=ax.get_yaxis_transform(), ha="right", va="bottom",
                    fontsize=8, color="grey")
        ax.set_xticks(ks)
        ax.set_xlabel("synthetic news per cold user (K)")
        seeds = f"\n(mean ± std of {seed_count({p.summary.n for p in drawn})})" if drawn else ""
        ax.set_ylabel(METRIC_LABELS[metric] + seeds)
        ax.set_title(METRIC_LABELS[metric])
        ax.grid(alpha=0.3)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.suptitle(f"{dataset}: effect of the number of generated news (Fig. 7)")
    return fig


VIEW = View(
    key="ng_k",
    title="Fig. 7: synthetic news per cold user",
    compute=_compute,
    empty_note=_empty_note,
    csv_file="ng_k.csv",
    records=_records,
    tables=_tables,
    plot=Plot("ng_k.png", plot_ng_k, on_split=True),
    sources=lambda points: config_sources([p.key for p in points]),
)
