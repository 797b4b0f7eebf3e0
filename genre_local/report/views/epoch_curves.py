"""Training curves: AUC on the stopping split and training throughput per epoch, one line per
stored run. The stopping split is dev, or a hold-out of train where dev is the reported split
(issue 9 part 3); each run names its own, so a curve is never called dev AUC when it is not.

The same numbers `train --track` sends to a tracker, read back from the store (run_epochs),
so the report shows them without any tracker installed. Like the main tables, a seed trained
more than once shows its newest run only (RunIndex.superseded); the table says how many older
runs were left out.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from genre_local.report import figures
from genre_local.report.runs import ConfigKey
from genre_local.report.view import Plot, Records, ReportContext, Sources, View, config_sources
from genre_local.store.results import EpochRow


@dataclass(frozen=True)
class EpochCurve:
    """One run's epochs, in order."""

    run_id: str
    config: ConfigKey
    seed: int
    epochs: tuple[int, ...]
    stop_auc: tuple[float | None, ...]  # AUC on stop_split per epoch; None: no stopping split
    samples_per_s: tuple[float, ...]
    seconds: tuple[float, ...]
    stop_split: str | None = None  # "dev" | "train-holdout" | None (no early stopping)
    autocast: str | None = None  # "bfloat16" | "float32": how its training forward ran; None: not recorded

    @property
    def label(self) -> str:
        k = f" k={self.config.ng_k}" if self.config.ng_k else ""
        source = f" ({self.config.source})" if self.config.source else ""
        return f"{self.config.model} {self.config.variant}{k}{source} [{self.config.features}] seed {self.seed}"


def epoch_curves(rows: Sequence[EpochRow], left_out: Collection[str] = ()) -> list[EpochCurve]:
    """One curve per run, runs in the order they were stored (rows come ordered by run, epoch),
    but those of `left_out` (older runs of a seed trained again)."""
    by_run: dict[str, list[EpochRow]] = {}
    for row in rows:
        if row.run_id not in left_out:
            by_run.setdefault(row.run_id, []).append(row)
    curves = []
    for run_id, epochs in by_run.items():
        epochs.sort(key=lambda r: r.epoch)
        first = epochs[0]
        curves.append(EpochCurve(
            run_id=run_id,
            config=ConfigKey(first.model, first.variant, first.ng_k, first.features, first.source or ""),
            seed=first.seed,
            epochs=tuple(r.epoch for r in epochs),
            stop_auc=tuple(r.stop_auc for r in epochs),
            samples_per_s=tuple(r.samples_per_s for r in epochs),
            seconds=tuple(r.seconds for r in epochs),
            stop_split=first.stop_split,
            autocast=first.autocast,
        ))
    return curves


def superseded_curves(ctx: ReportContext) -> set[str]:
    """The runs with epochs that report leaves out: a newer run of their configuration and seed counts."""
    older = {run for seeds in ctx.index.superseded.values() for runs in seeds.values() for run in runs}
    return {row.run_id for row in ctx.inputs.epochs if row.run_id in older}


def _compute(ctx: ReportContext) -> list[EpochCurve]:
    return epoch_curves(ctx.inputs.epochs, superseded_curves(ctx))


def _empty_note(ctx: ReportContext) -> str:
    return ctx.no_runs_note


def _records(rows: Sequence[EpochCurve]) -> Records:
    return Records(
        # "dev_auc": the CSV's column name from before the hold-out; it is the AUC on stop_split.
        ("run_id", "model", "variant", "ng_k", "generation_source", "features", "seed", "epoch", "dev_auc", "stop_split",
         "samples_per_s", "seconds", "autocast"),
        [(c.run_id, c.config.model, c.config.variant, c.config.ng_k, c.config.source, c.config.features, c.seed, epoch,
          auc, c.stop_split, rate, seconds, c.autocast)
         for c in rows for epoch, auc, rate, seconds in zip(c.epochs, c.stop_auc, c.samples_per_s, c.seconds,
                                                             strict=True)],
    )


def _auc(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def stop_splits(rows: Sequence[EpochCurve]) -> str:
    """The runs' stopping splits for a title, e.g. 'dev' or 'dev/train-holdout'; 'none' without."""
    return "/".join(sorted({c.stop_split for c in rows if c.stop_split})) or "none"


def _tables(rows: Sequence[EpochCurve], ctx: ReportContext) -> list[Table]:
    table = Table(title=f"Training curves: AUC on the stopping split ({stop_splits(rows)}) and samples/s per epoch "
                        f"({ctx.dataset})", title_justify="left")
    for name in ("run", "configuration", "stopped on", "epochs", "AUC per epoch", "samples/s per epoch", "autocast"):
        table.add_column(name, justify="right" if name == "epochs" else "left")
    left_out = len(superseded_curves(ctx))
    if left_out:
        table.caption = (f"{left_out} older run(s) left out: a seed trained more than once (same model, variant, K, "
                         "features and source) shows its newest run, as in the other tables")
    for c in rows:
        table.add_row(c.run_id, c.label, c.stop_split or "—", str(len(c.epochs)), " ".join(_auc(v) for v in c.stop_auc),
                      " ".join(f"{v:,.0f}" for v in c.samples_per_s), c.autocast or "not recorded")
    return [table]


def plot_epoch_curves(rows: Sequence[EpochCurve], dataset: str, path: Path) -> Path:
    """Two panels sharing the epoch axis: AUC on the stopping split (left) and samples/s (right),
    a line per run."""
    fig = figures.figure(12.0, 4.4)
    auc_ax, rate_ax = fig.subplots(1, 2, sharex=True)
    for c in rows:
        aucs = [float("nan") if v is None else v for v in c.stop_auc]
        line, = auc_ax.plot(c.epochs, aucs, marker="o", label=c.label)
        rate_ax.plot(c.epochs, c.samples_per_s, marker="o", color=line.get_color(), label=c.label)
    longest = max((max(c.epochs) for c in rows), default=1)
    splits = stop_splits(rows)
    for ax, title, ylabel in ((auc_ax, f"AUC per epoch on the stopping split ({splits})", f"AUC ({splits})"),
                              (rate_ax, "training throughput per epoch", "samples / s")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_xticks(range(1, longest + 1))
        ax.grid(alpha=0.3)
    if all(v is None for c in rows for v in c.stop_auc):
        auc_ax.annotate("no stopping split (no early stopping)", (0.5, 0.5), xycoords="axes fraction", ha="center", color="gray")
    figures.legend_outside(rate_ax)
    fig.suptitle(f"{dataset}: training curves")
    return figures.save(fig, path)


def _sources(rows: Sequence[EpochCurve]) -> Sources:
    return config_sources([c.config for c in rows])


VIEW = View(
    key="epoch_curves",
    title="Training curves: AUC on the stopping split and samples/s per epoch",
    compute=_compute,
    empty_note=_empty_note,
    csv_file="epoch_curves.csv",
    records=_records,
    tables=_tables,
    plot=Plot("epoch_curves.png", plot_epoch_curves),
    sources=_sources,
)
