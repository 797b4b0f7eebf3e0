"""Table 7: chain-based (profile, then generator) vs one-pass generation."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from recsys.catalog import METRICS
from rich.table import Table

from genre_local.report import figures
from genre_local.report.comparison import summary_cells
from genre_local.report.format import add_metric_columns, fmt_p, fmt_signed, fmt_summary
from genre_local.report.naming import kind_of, model_sort_key
from genre_local.report.runs import ConfigKey, RunIndex, Summary, main_key, seed_p_value
from genre_local.report.view import Plot, Records, ReportContext, View, config_sources


@dataclass(frozen=True)
class ChainRow:
    model: str
    metric: str
    original: Summary
    one_pass: Summary | None
    chain: Summary
    keys: tuple[ConfigKey, ...] = ()  # the configurations compared: original, chain, one-pass

    @property
    def one_pass_improvement(self) -> float | None:
        return None if self.one_pass is None else self.one_pass.mean - self.original.mean

    @property
    def chain_improvement(self) -> float:
        return self.chain.mean - self.original.mean

    @property
    def chain_vs_one_pass_p(self) -> float | None:
        return None if self.one_pass is None else seed_p_value(self.one_pass, self.chain)


def chain_table(index: RunIndex, features: str, default_k: int) -> list[ChainRow]:
    out = []
    for model in index.models():
        base = main_key(index, model, "original", features, default_k)
        chain = main_key(index, model, "chain", features, default_k)
        if not (base and chain):
            continue
        one_pass = main_key(index, model, "ng", features, default_k)
        for metric in METRICS:
            b, c = index.summary(base, metric), index.summary(chain, metric)
            if b is None or c is None:
                continue
            o = index.summary(one_pass, metric) if one_pass else None
            keys = (base, chain) + ((one_pass,) if o is not None else ())
            out.append(ChainRow(model, metric, b, o, c, keys))
    return out


def _compute(ctx: ReportContext) -> list[ChainRow]:
    return chain_table(ctx.index, ctx.features, ctx.k) if ctx.features else []


def _empty_note(ctx: ReportContext) -> str:
    return "needs one model trained on `original` and on `chain` (--variant chain)"


def _records(rows: Sequence[ChainRow]) -> Records:
    return Records(
        ("model", "kind", "metric", "original_mean", "original_std", "original_seeds",
         "one_pass_mean", "one_pass_std", "one_pass_seeds", "chain_mean", "chain_std", "chain_seeds",
         "one_pass_improvement", "chain_improvement", "chain_vs_one_pass_p"),
        [(r.model, kind_of(r.model), r.metric, *summary_cells(r.original), *summary_cells(r.one_pass),
          *summary_cells(r.chain), r.one_pass_improvement, r.chain_improvement, r.chain_vs_one_pass_p)
         for r in rows],
    )


def _tables(rows: Sequence[ChainRow], ctx: ReportContext) -> list[Table]:
    table = Table(title="Table 7: chain-based (UP → NG) vs one-pass generation", title_justify="left")
    table.add_column("model")
    table.add_column("data")
    add_metric_columns(table)
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
    return [table]


def plot_chain(rows: Sequence[ChainRow], dataset: str, path: Path) -> Path:
    """Table 7: AUC of original, one-pass and chain-based generation per model."""
    auc = {r.model: r for r in rows if r.metric == "auc"}
    models = sorted(auc, key=model_sort_key)
    series: list[figures.Series] = [
        ("original", [auc[m].original.mean for m in models], [auc[m].original.std for m in models]),
        ("one-pass (ng)", [auc[m].one_pass.mean if auc[m].one_pass else None for m in models],
         [auc[m].one_pass.std if auc[m].one_pass else None for m in models]),
        ("chain (UP → NG)", [auc[m].chain.mean for m in models], [auc[m].chain.std for m in models]),
    ]
    fig = figures.figure(max(6.0, 1.3 * len(models) + 2.5), 4.2)
    ax = fig.add_subplot()
    figures.grouped_bars(ax, [figures.model_label(m) for m in models], series, zero_line=False)
    ax.set_title(f"{dataset}: chain-based vs one-pass generation (Table 7)")
    ax.set_ylabel("AUC (mean ± std over seeds)")
    ax.set_xlabel("model")
    figures.legend_outside(ax)
    return figures.save(fig, path)


VIEW = View(
    key="chain",
    title="Table 7: chain vs one-pass generation",
    compute=_compute,
    empty_note=_empty_note,
    csv_file="chain.csv",
    records=_records,
    tables=_tables,
    plot=Plot("chain.png", plot_chain),
    sources=lambda rows: config_sources([k for r in rows for k in r.keys]),
)
