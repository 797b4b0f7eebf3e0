"""Table 7: chain-based (profile, then generator) vs one-pass generation.

As the paper, all three columns (original, one-pass ng, chain) are scored on the "Chain" cohort:
the users whose profile from the same generation source names at least one valid topic (the
metric group genre_local.store.enrichment.chain_cohort_group(source), stored by `train` for
original, ng and chain runs). One row group per generation source. Runs stored before the
cohort existed fall back to all users, and the row says so."""

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
from genre_local.report.runs import ALL_USERS, ConfigKey, RunIndex, Summary, main_key, seed_p_value
from genre_local.report.view import SETTINGS_COLUMN, Plot, Records, ReportContext, View, config_sources
from genre_local.store.enrichment import chain_cohort_group
from genre_local.store.generations import split_method


@dataclass(frozen=True)
class ChainRow:
    model: str
    metric: str
    original: Summary
    one_pass: Summary | None
    chain: Summary
    keys: tuple[ConfigKey, ...] = ()  # the configurations compared: original, chain, one-pass
    source: str = ""  # the generation source of the chain (and one-pass) runs
    group: str = ALL_USERS  # the metric group compared: the source's Chain cohort, or all users
    cohort_users: int | None = None  # users in the Chain cohort (Table 1's valid profiles)
    settings_note: str | None = None  # the settings the runs of `keys` differ in; None: the same

    @property
    def on_cohort(self) -> bool:
        return self.group != ALL_USERS

    @property
    def users_label(self) -> str:
        if not self.on_cohort:
            return "all users (no Chain-cohort metrics stored; retrain)"
        size = f", {self.cohort_users:,} users" if self.cohort_users is not None else ""
        return f"Chain cohort{size}"

    @property
    def one_pass_improvement(self) -> float | None:
        return None if self.one_pass is None else self.one_pass.mean - self.original.mean

    @property
    def chain_improvement(self) -> float:
        return self.chain.mean - self.original.mean

    @property
    def chain_vs_one_pass_p(self) -> float | None:
        return None if self.one_pass is None else seed_p_value(self.one_pass, self.chain)


def chain_table(index: RunIndex, features: str, default_k: int,
                cohort_sizes: dict[str, int] | None = None) -> list[ChainRow]:
    """Per model and generation source: original vs one-pass vs chain, on the source's Chain
    cohort when original and chain both stored it (else on all users, for every column alike)."""
    out = []
    for model in index.models():
        base = main_key(index, model, "original", features, default_k)
        for source in index.sources("chain"):
            chain = main_key(index, model, "chain", features, default_k, source)
            if not (base and chain):
                continue
            # The one-pass generator reads no profile: its runs' source has no profile method.
            one_pass = main_key(index, model, "ng", features, default_k, split_method(source)[0])
            cohort = chain_cohort_group(source) if source else None
            group = (cohort if cohort and index.summary(base, "auc", cohort) and index.summary(chain, "auc", cohort)
                     else ALL_USERS)
            for metric in METRICS:
                b, c = index.summary(base, metric, group), index.summary(chain, metric, group)
                if b is None or c is None:
                    continue
                o = index.summary(one_pass, metric, group) if one_pass else None
                keys = (base, chain) + ((one_pass,) if o is not None else ())
                out.append(ChainRow(model, metric, b, o, c, keys, source, group,
                                    (cohort_sizes or {}).get(source), index.settings_note(keys)))
    return out


def _compute(ctx: ReportContext) -> list[ChainRow]:
    sizes = {e.label: e.valid_profile_users for e in ctx.inputs.enrichment}
    return chain_table(ctx.index, ctx.features, ctx.k, sizes) if ctx.features else []


def _empty_note(ctx: ReportContext) -> str:
    return "needs one model trained on `original` and on `chain` (--variant chain)"


def _records(rows: Sequence[ChainRow]) -> Records:
    return Records(
        ("model", "kind", "generation_source", "users", "cohort_users", "metric", "original_mean", "original_std", "original_seeds",
         "one_pass_mean", "one_pass_std", "one_pass_seeds", "chain_mean", "chain_std", "chain_seeds",
         "one_pass_improvement", "chain_improvement", "chain_vs_one_pass_p", SETTINGS_COLUMN),
        [(r.model, kind_of(r.model), r.source, r.group, r.cohort_users, r.metric, *summary_cells(r.original), *summary_cells(r.one_pass),
          *summary_cells(r.chain), r.one_pass_improvement, r.chain_improvement, r.chain_vs_one_pass_p, r.settings_note)
         for r in rows],
    )


def _tables(rows: Sequence[ChainRow], ctx: ReportContext) -> list[Table]:
    table = Table(title=f"Table 7: chain-based (UP → NG) vs one-pass generation, on the Chain cohort — {ctx.where}",
                  title_justify="left")
    table.add_column("model")
    table.add_column("source · users")
    table.add_column("data")
    add_metric_columns(table)
    blocks: dict[tuple[str, str], dict[str, ChainRow]] = defaultdict(dict)
    for r in rows:
        blocks[(r.model, r.source)][r.metric] = r
    for (model, source), by_metric in blocks.items():
        get = [by_metric.get(m) for m in METRICS]
        first = next(iter(by_metric.values()))
        table.add_row(model, source or "—", "original", *[fmt_summary(r.original if r else None) for r in get])
        table.add_row("", first.users_label, "one-pass (ng)", *[fmt_summary(r.one_pass if r else None) for r in get])
        table.add_row("", "", "chain", *[fmt_summary(r.chain if r else None) for r in get])
        table.add_row("", "", "gain one-pass", *[fmt_signed(r.one_pass_improvement if r else None) for r in get])
        table.add_row("", "", "gain chain", *[fmt_signed(r.chain_improvement if r else None) for r in get])
        p = [r.chain_vs_one_pass_p if r else None for r in get]
        if any(v is not None for v in p):
            table.add_row("", "", "p chain vs one-pass", *[fmt_p(v) for v in p])
        table.rows[-1].end_section = True
    return [table]


def plot_chain(rows: Sequence[ChainRow], dataset: str, path: Path) -> Path:
    """Table 7: AUC of original, one-pass and chain-based generation per model (and source)."""
    auc = {(r.model, r.source): r for r in rows if r.metric == "auc"}
    keys = sorted(auc, key=lambda k: (model_sort_key(k[0]), k[1]))
    several = len({s for _, s in keys}) > 1
    labels = [figures.model_label(m) + (f"\n{s}" if several else "") for m, s in keys]
    series: list[figures.Series] = [
        ("original", [auc[k].original.mean for k in keys], [auc[k].original.std for k in keys]),
        ("one-pass (ng)", [auc[k].one_pass.mean if auc[k].one_pass else None for k in keys],
         [auc[k].one_pass.std if auc[k].one_pass else None for k in keys]),
        ("chain (UP → NG)", [auc[k].chain.mean for k in keys], [auc[k].chain.std for k in keys]),
    ]
    fig = figures.figure(max(6.0, 1.3 * len(keys) + 2.5), 4.2)
    ax = fig.add_subplot()
    missing = figures.grouped_bars(ax, labels, series, zero_line=False)
    cohort = "Chain cohort" if all(auc[k].on_cohort for k in keys) else "Chain cohort where stored, else all users"
    ax.set_title(f"{dataset}: chain-based vs one-pass generation, {cohort} (Table 7)")
    ax.set_ylabel("AUC (mean ± std over seeds)")
    ax.set_xlabel("model")
    figures.legend_outside(ax, figures.missing_notes(missing))
    return figures.save(fig, path)


VIEW = View(
    key="chain",
    title="Table 7: chain vs one-pass generation",
    compute=_compute,
    empty_note=_empty_note,
    csv_file="chain.csv",
    records=_records,
    tables=_tables,
    plot=Plot("chain.png", plot_chain, on_split=True),
    sources=lambda rows: config_sources([k for r in rows for k in r.keys]),
)
