"""Table 8: what each GENRE scheme's generation cost, what it gained, and the ratio (CCR), per
generation source (LLM, prompt set): each source's cost beside the gain of the runs that read it.

A cost is unknown, and shown as "unknown" (None in CSV/JSON, never 0), when any run it sums did
not record it: an imported source's runs (migration 009) know their rows and, where the file gave
them, tokens and latencies, but no money, start-up or wall time, so its cost and CCR are unknown.
A source with no generation runs at all has its gain and an unknown cost. Runs stored before migration 006 recorded no source and
count for the only generating source there is."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from genre_local.report import figures
from genre_local.report.format import UNKNOWN, fmt_known, fmt_ratio, fmt_signed
from genre_local.report.naming import SCHEMES, kind_of
from genre_local.report.runs import RunIndex, main_key
from genre_local.report.view import SETTINGS_COLUMN, Plot, Records, ReportContext, Sources, View
from genre_local.store.results import GenerationRunRow


@dataclass(frozen=True)
class CostRow:
    scheme: str
    tasks: tuple[str, ...]
    variant: str
    runs: int
    models: tuple[str, ...]  # LLMs that generated
    requests: int
    valid: int
    invalid: int
    # None: unknown, some run summed here did not record it (imported outputs)
    prompt_tokens: int | None
    completion_tokens: int | None
    engine_seconds: float | None
    wall_seconds: float | None  # task wall time plus the engine start-up charged to it
    money: float | None  # sum of `cost` when every run had a price
    matching_improvement: float | None  # mean AUC gain over original, matching models
    matching_models: int
    ranking_improvement: float | None
    ranking_models: int
    unit: str  # what one unit of cost is: 'price' or 'engine-hour'
    run_ids: tuple[str, ...] = ()  # the generation runs whose cost the row sums
    source: str = ""  # the generation source (LLM/prompt set); "" when runs recorded none
    provenance: str = "generated"  # generated | imported (comma-separated when a source has both)
    # The settings the runs behind a gain (a model's original and variant) differ in; None: the same
    settings_note: str | None = None

    @property
    def has_cost(self) -> bool:
        """False when the cost is unknown: no generation runs, or a run that did not record it."""
        return self.cost_units is not None

    @property
    def engine_hours(self) -> float | None:
        return None if self.engine_seconds is None else self.engine_seconds / 3600.0

    @property
    def cost_units(self) -> float | None:
        """The cost in the table's unit; None when unknown. An imported source's cost is unknown
        in either unit: it has no price, and the latencies its file may give were spent on someone
        else's machine or service, not engine-hours comparable with a local run's."""
        if not self.run_ids or "imported" in self.provenance.split(","):
            return None
        return self.money if self.unit == "price" else self.engine_hours

    def ccr(self, improvement: float | None) -> float | None:
        """AUC improvement per unit of cost; None when either side is unknown or the cost is 0."""
        cost = self.cost_units
        if improvement is None or cost is None or cost <= 0:
            return None
        return improvement / cost

    @property
    def matching_ccr(self) -> float | None:
        return self.ccr(self.matching_improvement)

    @property
    def ranking_ccr(self) -> float | None:
        return self.ccr(self.ranking_improvement)


def _mean_auc_gain(index: RunIndex, variant: str, kind: str, features: str | None,
                   default_k: int, source: str | None = None) -> tuple[float | None, int, list[str]]:
    """The mean AUC gain of `variant` over original among the models of `kind`, how many models
    it averages, and the settings notes of the models whose runs compared were trained otherwise."""
    if features is None:
        return None, 0, []
    gains, notes = [], []
    for model in index.models():
        if kind_of(model) != kind:
            continue
        base = main_key(index, model, "original", features, default_k)
        other = main_key(index, model, variant, features, default_k, source)
        b = index.summary(base, "auc") if base else None
        o = index.summary(other, "auc") if other else None
        if b is not None and o is not None:
            gains.append(o.mean - b.mean)
            note = index.settings_note([base, other])
            if note:
                notes.append(note)
    return (math.fsum(gains) / len(gains) if gains else None), len(gains), notes


def cost_table(
    runs: list[GenerationRunRow], index: RunIndex, features: str | None, default_k: int
) -> list[CostRow]:
    """Per GENRE scheme: what generating its data cost, what it gained, and the ratio (CCR).

    Costs are in money only when every local generation run of the dataset had a price per hour,
    so all schemes share one unit; otherwise in hours of engine time. Imported runs never have a
    price: they do not decide the unit, and their cost in it is unknown.
    """
    relevant = [r for r in runs if any(r.task in tasks for _, tasks, _ in SCHEMES) and r.provenance != "imported"]
    unit = "price" if relevant and all(r.cost is not None for r in relevant) else "engine-hour"
    out = []
    for scheme, tasks, variant in SCHEMES:
        generated = [r for r in runs if r.task in tasks]
        trained = [s for s in index.sources(variant) if s]
        sources = list(dict.fromkeys([*sorted({r.source for r in generated}), *trained]))
        # Runs stored before migration 006 recorded no source: they read the only generating one.
        legacy = len(sources) == 1 and sources[0] not in trained and "" in index.sources(variant)
        for source in sources:
            picked = [r for r in generated if r.source == source]
            gain_source = "" if legacy else source
            m_gain, m_n, m_notes = _mean_auc_gain(index, variant, "matching", features, default_k, gain_source)
            r_gain, r_n, r_notes = _mean_auc_gain(index, variant, "ranking", features, default_k, gain_source)
            out.append(CostRow(
                scheme=scheme,
                tasks=tuple(t for t in tasks if any(r.task == t for r in picked)) or tasks,
                variant=variant,
                runs=len(picked),
                models=tuple(sorted({r.model for r in picked})) or (source.rsplit("/", 1)[0],),
                requests=sum(r.requests for r in picked),
                valid=sum(r.valid for r in picked),
                invalid=sum(r.invalid for r in picked),
                prompt_tokens=known_sum([r.prompt_tokens for r in picked]),
                completion_tokens=known_sum([r.completion_tokens for r in picked]),
                engine_seconds=known_sum([r.engine_seconds for r in picked]),
                wall_seconds=known_sum([None if r.wall_seconds is None or r.startup_seconds is None
                                        else r.wall_seconds + r.startup_seconds for r in picked]),
                money=known_sum([r.cost for r in picked]),
                matching_improvement=m_gain,
                matching_models=m_n,
                ranking_improvement=r_gain,
                ranking_models=r_n,
                unit=unit,
                run_ids=tuple(dict.fromkeys(r.run_id for r in picked)),
                source=source,
                provenance=",".join(sorted({r.provenance for r in picked})) or "none",
                settings_note=" | ".join([*m_notes, *r_notes]) or None,
            ))
    return out


def known_sum(values: list[float | int | None]) -> float | int | None:
    """The total when every value is known; None (unknown) when any is, or there are none."""
    if not values or any(v is None for v in values):
        return None
    if all(isinstance(v, int) for v in values):
        return sum(values)  # type: ignore[arg-type]
    return math.fsum(values)  # type: ignore[arg-type]


def _compute(ctx: ReportContext) -> list[CostRow]:
    return cost_table(ctx.inputs.generation_runs, ctx.index, ctx.features, ctx.k)


def _empty_note(ctx: ReportContext) -> str:
    return f"no generation runs stored for dataset '{ctx.dataset}' (genre-local generate ...)"


def _records(rows: Sequence[CostRow]) -> Records:
    return Records(
        ("scheme", "tasks", "variant", "generation_source", "runs", "llm", "requests", "valid", "invalid", "prompt_tokens",
         "completion_tokens", "engine_seconds", "wall_seconds", "cost", "cost_unit", "cost_units",
         "matching_auc_improvement", "matching_models", "matching_ccr",
         "ranking_auc_improvement", "ranking_models", "ranking_ccr", "provenance", SETTINGS_COLUMN),
        [(r.scheme, "+".join(r.tasks), r.variant, r.source, r.runs, " ".join(r.models), r.requests, r.valid,
          r.invalid, r.prompt_tokens, r.completion_tokens, r.engine_seconds, r.wall_seconds, r.money, r.unit,
          r.cost_units,
          r.matching_improvement, r.matching_models, r.matching_ccr,
          r.ranking_improvement, r.ranking_models, r.ranking_ccr, r.provenance, r.settings_note) for r in rows],
    )


def _tables(rows: Sequence[CostRow], ctx: ReportContext) -> list[Table]:
    """Two tables, so each fits a terminal: what generation cost, then what it bought (CCR)."""
    unit = rows[0].unit if rows else "engine-hour"
    cost_label = "cost" if unit == "price" else "engine h"
    spent = Table(title="Table 8a: generation cost per GENRE scheme", title_justify="left")
    for name in ("scheme", "source", "tasks", "requests", "valid", "tokens in", "tokens out", "engine s",
                 "wall+start s", cost_label):
        spent.add_column(name, justify="left" if name in ("scheme", "source", "tasks") else "right")
    for r in rows:
        if not r.run_ids:
            spent.add_row(r.scheme, r.source, "+".join(r.tasks), "—", "—", *[UNKNOWN] * 5)
            continue
        written = r.valid + r.invalid
        valid = f"{100.0 * r.valid / written:.1f}%" if written else "—"
        spent.add_row(r.scheme, r.source, "+".join(r.tasks), f"{r.requests:,}", valid,
                      fmt_known(r.prompt_tokens, ","), fmt_known(r.completion_tokens, ","),
                      fmt_known(r.engine_seconds, ",.1f"), fmt_known(r.wall_seconds, ",.1f"),
                      fmt_known(r.cost_units, ".4g"))
    per = "unit of price" if unit == "price" else "engine-hour (no --price-per-hour stored)"
    gain = Table(title=f"Table 8b: cost conversion rate, CCR = AUC gain per {per}", title_justify="left")
    for name in ("scheme", "variant", "source", "AUC gain matching", "CCR matching", "AUC gain ranking",
                 "CCR ranking"):
        gain.add_column(name, justify="left" if name in ("scheme", "variant", "source") else "right")
    for r in rows:
        gain.add_row(
            r.scheme, r.variant, r.source,
            fmt_signed(r.matching_improvement) + _models(r.matching_models),
            _ccr_text(r, r.matching_improvement, r.matching_ccr),
            fmt_signed(r.ranking_improvement) + _models(r.ranking_models),
            _ccr_text(r, r.ranking_improvement, r.ranking_ccr),
        )
    return [spent, gain]


def _ccr_text(row: CostRow, improvement: float | None, ccr: float | None) -> str:
    """A gain with an unknown cost has an unknown CCR; no gain (or a zero cost) has none."""
    if improvement is not None and not row.has_cost:
        return UNKNOWN
    return fmt_ratio(ccr)


def _models(count: int) -> str:
    return "" if not count else f" ({count} model{'s' if count > 1 else ''})"


def plot_cost(rows: Sequence[CostRow], dataset: str, path: Path) -> Path:
    """Table 8: cost per scheme and the cost conversion rate for matching and ranking models."""
    return figures.save(cost_figure(rows, dataset), path)


def _no_ccr(improvements: Sequence[float | None], rows: Sequence[CostRow]) -> str:
    """Why there is no CCR where there is none: nothing trained, an unknown cost, or a zero one."""
    if all(v is None for v in improvements):
        return "not trained"
    if not any(r.has_cost for r, v in zip(rows, improvements) if v is not None):
        return "cost unknown"
    return "no CCR (cost 0)"


def cost_figure(rows: Sequence[CostRow], dataset: str):  # -> matplotlib.figure.Figure
    unit = rows[0].unit if rows else "engine-hour"
    several = len({r.source for r in rows}) > len({r.scheme for r in rows}) or len({r.source for r in rows}) > 1
    schemes = [f"{r.scheme}\n{r.source}" if several else r.scheme for r in rows]
    fig = figures.figure(11.0, 4.2)
    left, right = fig.subplots(1, 2)
    left.bar(schemes, [math.nan if r.cost_units is None else r.cost_units for r in rows], color="tab:gray")
    for j, r in enumerate(rows):
        if r.cost_units is None:  # a gap with no word reads as a zero cost
            imported = "imported" in r.provenance.split(",")
            left.annotate("cost unknown (imported)" if imported else "cost unknown", (j, 0), xytext=(0, 4),
                          textcoords="offset points", ha="center", va="bottom", fontsize=8, color="gray")
    left.set_title("generation cost per scheme")
    left.set_ylabel("cost (price units)" if unit == "price" else "engine hours")
    left.set_xlabel("GENRE scheme")
    left.grid(axis="y", alpha=0.3)
    left.set_axisbelow(True)
    gains = {"matching models": [r.matching_improvement for r in rows],
             "ranking models": [r.ranking_improvement for r in rows]}
    series: list[figures.Series] = [
        ("matching models", [r.matching_ccr for r in rows], [None] * len(rows)),
        ("ranking models", [r.ranking_ccr for r in rows], [None] * len(rows)),
    ]
    per_scheme = [_no_ccr([r.matching_improvement, r.ranking_improvement], [r, r]) for r in rows]
    missing = figures.grouped_bars(right, schemes, series, zero_line=True, empty_notes=per_scheme)
    right.set_title("cost conversion rate (CCR)")
    right.set_ylabel("AUC gain per " + ("price unit" if unit == "price" else "engine hour"))
    right.set_xlabel("GENRE scheme")
    figures.legend_outside(right, [f"{label}: {_no_ccr(gains[label], rows)}" for label in missing])
    fig.suptitle(f"{dataset}: cost and cost conversion rate (Table 8)")
    return fig


VIEW = View(
    key="cost",
    title="Table 8: cost and cost conversion rate",
    compute=_compute,
    empty_note=_empty_note,
    csv_file="cost.csv",
    records=_records,
    tables=_tables,
    plot=Plot("cost.png", plot_cost, on_split=True),
    sources=lambda rows: Sources(generation_runs=tuple(dict.fromkeys(i for r in rows for i in r.run_ids))),
)
