"""One dataset's report: every view computed, written as CSV and PNG, or skipped with a note."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from genre_local.report import plots, records, render, views
from genre_local.report.rows import FidelityRow, GenerationRunRow, MetricRow


@dataclass(frozen=True)
class ReportInputs:
    dataset: str
    metrics: list[MetricRow]
    generation_runs: list[GenerationRunRow]
    fidelity: list[FidelityRow]
    default_features: str  # train.features of the config: the feature set of the main tables
    default_k: int  # train.ng_k of the config: the K of the main ng/chain tables


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


def _split_label(index: views.RunIndex) -> str:
    splits = set().union(*index.splits.values()) if index.splits else set()
    return "/".join(sorted(splits)) or "-"


def build_report(inputs: ReportInputs, out_dir: Path, with_plots: bool = True) -> list[ViewResult]:
    index = views.index_runs(inputs.metrics)
    features = views.main_features(index, inputs.default_features)
    k = inputs.default_k
    split = _split_label(index)
    where = f"{inputs.dataset}, {split} split, features {features}" if features else inputs.dataset
    no_runs = f"no training runs stored for dataset '{inputs.dataset}' (genre-local train --dataset {inputs.dataset} ...)"
    results: list[ViewResult] = []

    def view(name: str, title: str, make: Callable[[ViewResult], None]) -> None:
        result = ViewResult(name, title)
        make(result)
        results.append(result)

    def variants(r: ViewResult) -> None:
        tables = views.variant_tables(index, features, k) if features else []
        if not tables:
            r.note = no_runs if not index.runs else (
                "needs one model trained on `original` and on another variant "
                f"(genre-local train --dataset {inputs.dataset} --model M --variant ns|up|ng|chain)")
            return
        rec = records.variant_records(tables)
        r.rows = len(rec.rows)
        r.files.append(records.write_csv(out_dir / "variants.csv", rec))
        for t in tables:
            r.tables.append(render.comparison_table(
                f"original vs {t.variant}: {render.variant_title(t.variant)} — {where}", t.comparisons))
        if with_plots:
            r.files.append(plots.plot_variants(tables, inputs.dataset, out_dir / "variants_auc.png"))

    def user_groups(r: ViewResult) -> None:
        comps = views.user_group_table(index, features, k) if features else []
        if not comps:
            r.note = "needs one model trained on `original` and on `ng` or `chain` (--variant ng)"
            return
        rec = records.group_records(comps)
        r.rows = len(rec.rows)
        r.files.append(records.write_csv(out_dir / "user_groups.csv", rec))
        r.tables.append(render.comparison_table(f"Table 6: new vs warm users — {where}", comps, show_group=True))
        if with_plots:
            r.files.append(plots.plot_user_groups(comps, inputs.dataset, out_dir / "user_groups.png"))

    def ng_k(r: ViewResult) -> None:
        points = views.ng_k_curve(index, features) if features else []
        if not points:
            r.note = "needs one model trained on `ng` with two or more --ng-k values (`original` counts as K=0)"
            return
        rec = records.curve_records(points)
        r.rows = len(rec.rows)
        r.files.append(records.write_csv(out_dir / "ng_k.csv", rec))
        r.tables.append(render.curve_table(points))
        if with_plots:
            r.files.append(plots.plot_ng_k(points, inputs.dataset, out_dir / "ng_k.png"))

    def chain(r: ViewResult) -> None:
        rows = views.chain_table(index, features, k) if features else []
        if not rows:
            r.note = "needs one model trained on `original` and on `chain` (--variant chain)"
            return
        rec = records.chain_records(rows)
        r.rows = len(rec.rows)
        r.files.append(records.write_csv(out_dir / "chain.csv", rec))
        r.tables.append(render.chain_rich(rows))
        if with_plots:
            r.files.append(plots.plot_chain(rows, inputs.dataset, out_dir / "chain.png"))

    def ablation(r: ViewResult) -> None:
        rows = views.feature_ablation(index, k)
        if not rows:
            r.note = "needs one model and variant trained with two or more --features sets"
            return
        rec = records.ablation_records(rows)
        r.rows = len(rec.rows)
        r.files.append(records.write_csv(out_dir / "feature_ablation.csv", rec))
        r.tables.append(render.ablation_rich(rows))
        if with_plots:
            r.files.append(plots.plot_ablation(rows, inputs.dataset, out_dir / "feature_ablation.png"))

    def cost(r: ViewResult) -> None:
        rows = views.cost_table(inputs.generation_runs, index, features, k)
        if not rows:
            r.note = f"no generation runs stored for dataset '{inputs.dataset}' (genre-local generate ...)"
            return
        rec = records.cost_records(rows)
        r.rows = len(rec.rows)
        r.files.append(records.write_csv(out_dir / "cost.csv", rec))
        r.tables.extend(render.cost_rich(rows))
        if with_plots:
            r.files.append(plots.plot_cost(rows, inputs.dataset, out_dir / "cost.png"))

    def fidelity(r: ViewResult) -> None:
        rows = views.fidelity_rows(inputs.fidelity)
        if not rows:
            r.note = "no profile fidelity stored (needs synthetic truth and genre-local generate --task profile)"
            return
        rec = records.fidelity_records(rows)
        r.rows = len(rec.rows)
        r.files.append(records.write_csv(out_dir / "profile_fidelity.csv", rec))
        r.tables.append(render.fidelity_rich(rows))

    view("variants", "Tables 3-5: original vs each variant", variants)
    view("user_groups", "Table 6: new vs warm users", user_groups)
    view("ng_k", "Fig. 7: synthetic news per cold user", ng_k)
    view("chain", "Table 7: chain vs one-pass generation", chain)
    view("feature_ablation", "Fig. 6: news features", ablation)
    view("cost", "Table 8: cost and cost conversion rate", cost)
    view("profile_fidelity", "Profile fidelity", fidelity)
    return results
