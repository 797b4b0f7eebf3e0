"""The report's structure: declared views, one generic driver, typed reads, shared names."""

from __future__ import annotations

import csv
import dataclasses
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from recsys.stats import paired_p_value
from rich.table import Table

from genre_local.report.build import ReportInputs, build_report, render_view
from genre_local.report.naming import canonical_features, canonical_variant, kind_of, model_sort_key
from genre_local.report.runs import Summary, seed_p_value
from genre_local.report.view import Plot, Records, ReportContext, View, report_context
from genre_local.report.views import VIEWS
from genre_local.store import open_store
from genre_local.store.results import MetricRow, _typed_rows

FEATURES = "title,category"


def inputs(metrics: list[MetricRow] | None = None) -> ReportInputs:
    return ReportInputs("d", metrics or [], [], [], FEATURES, 2)


def test_every_view_is_declared_once_with_its_own_files() -> None:
    keys = [v.key for v in VIEWS]
    assert keys == ["enrichment", "variants", "user_groups", "ng_k", "chain", "feature_ablation", "cost", "profile_fidelity",
                    "epoch_curves"]
    files = [v.csv_file for v in VIEWS] + [v.plot.file for v in VIEWS if v.plot]
    assert len(files) == len(set(files))  # no view overwrites another's file


@dataclass(frozen=True)
class CountRow:
    model: str
    runs: int


def _count_view(drawn: list[Path]) -> View[CountRow]:
    def compute(ctx: ReportContext) -> list[CountRow]:
        return [CountRow(k.model, len(seeds)) for k, seeds in ctx.index.runs.items()]

    def draw(rows, dataset: str, path: Path) -> Path:
        drawn.append(path)
        path.write_bytes(b"png")
        return path

    def tables(rows, ctx: ReportContext) -> list[Table]:
        table = Table(title=f"runs — {ctx.where}")
        table.add_column("model")
        for r in rows:
            table.add_row(r.model)
        return [table]

    return View(
        key="count", title="Runs per model",
        compute=compute,
        empty_note=lambda ctx: f"nothing trained on {ctx.dataset}",
        csv_file="count.csv",
        records=lambda rows: Records(("model", "runs"), [(r.model, r.runs) for r in rows]),
        tables=tables,
        plot=Plot("count.png", draw),
    )


def test_a_new_view_is_one_declaration_the_driver_renders(tmp_path: Path) -> None:
    drawn: list[Path] = []
    view = _count_view(drawn)
    rows = [MetricRow("nrms", "original", s, 0, FEATURES, "dev", "all", "auc", 0.6) for s in (1, 2)]
    (result,) = build_report(inputs(rows), tmp_path, views=[view], with_html=False).views
    assert (result.name, result.rows, result.note) == ("count", 1, None)
    assert result.files == [tmp_path / "count.csv", tmp_path / "count.png"] and drawn == [tmp_path / "count.png"]
    with (tmp_path / "count.csv").open(newline="") as handle:
        assert list(csv.reader(handle)) == [["model", "runs"], ["nrms", "2"]]
    assert result.tables[0].title == "runs — d, dev split, features title,category"
    no_plot = render_view(view, report_context(inputs(rows)), tmp_path / "np", with_plots=False)
    assert [p.name for p in no_plot.files] == ["count.csv"] and len(drawn) == 1


def test_a_plot_of_the_reported_split_names_it_in_its_title(tmp_path: Path) -> None:
    """Regression: the PNGs of Tables 3-8 said only the dataset; a PNG shared alone must say
    which split its numbers come from (as the tables do) and how many seeds a bar averages."""
    from genre_local.report.comparison import Comparison, seeds_note
    from genre_local.report.runs import ConfigKey
    from genre_local.report.views.variants import VIEW as VARIANTS

    labels: list[str] = []

    def draw(rows, label: str, path: Path) -> Path:
        labels.append(label)
        path.write_bytes(b"png")
        return path

    rows = [MetricRow("nrms", "original", s, 0, FEATURES, "test", "all", "auc", 0.6) for s in (1, 2)]
    ctx = report_context(inputs(rows))
    for on_split in (True, False):
        view = dataclasses.replace(_count_view([]), plot=Plot("count.png", draw, on_split=on_split))
        render_view(view, ctx, tmp_path / str(on_split))
    assert labels == ["d, test split", "d"]
    assert VARIANTS.plot is not None and VARIANTS.plot.on_split

    def summary(*seeds: int) -> Summary:
        return Summary({s: 0.6 for s in seeds})

    key = ConfigKey("nrms", "original", 0, FEATURES)
    three = Comparison("nrms", "all", "auc", key, key, summary(1, 2, 3), summary(1, 2, 3))
    one = Comparison("nrms", "all", "auc", key, key, summary(1), summary(1))
    assert seeds_note([three]) == "mean of 3 seeds"
    assert seeds_note([one]) == "mean of 1 seed"
    assert seeds_note([one, three]) == "mean of 1-3 seeds"
    assert seeds_note([]) == "no seeds"


def test_an_empty_view_writes_nothing_and_says_why(tmp_path: Path) -> None:
    (result,) = build_report(inputs(), tmp_path / "o", views=[_count_view([])]).views
    assert result.skipped and result.note == "nothing trained on d"
    assert result.as_json() == {"title": "Runs per model", "skipped": "nothing trained on d"}
    assert not (tmp_path / "o").exists()


def test_every_declared_view_is_empty_without_stored_rows(tmp_path: Path) -> None:
    report = build_report(inputs(), tmp_path / "o")
    results = report.views
    assert report.html is None and not report.written
    assert [r.name for r in results] == [v.key for v in VIEWS]
    assert all(r.skipped and r.note and "\n" not in r.note for r in results)
    notes = {r.name: r.note for r in results}
    assert "no training runs stored for dataset 'd'" in notes["variants"]
    assert notes["enrichment"] == "no valid generation stored for dataset 'd' (genre-local generate --dataset d)"
    assert not (tmp_path / "o").exists()


def test_summary_and_p_value_are_recsys_stats_over_aligned_seeds() -> None:
    base = Summary({1: 0.60, 2: 0.62, 3: 0.64, 9: 0.1})
    other = Summary({3: 0.66, 1: 0.61, 2: 0.64})
    assert seed_p_value(base, other) == paired_p_value([0.61, 0.64, 0.66], [0.60, 0.62, 0.64])
    assert seed_p_value(base, Summary({4: 0.5, 5: 0.6})) is None  # no seed in common


def test_names_come_from_the_catalog() -> None:
    assert kind_of("nrms") == "matching" and kind_of("din") == "ranking"
    assert kind_of("mystery") == "other"  # a stored model the catalog lacks is shown, not fatal
    assert sorted(["din", "mystery", "naml"], key=model_sort_key) == ["naml", "din", "mystery"]
    assert canonical_variant("ng+Original+ns") == "ns+ng"
    assert canonical_features("image, title,title") == "title,image"


def test_typed_rows_match_columns_by_name_and_refuse_a_mismatch(tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class Pair:
        a: int
        b: str
        c: float | None = None

    with open_store(tmp_path / "s.duckdb") as store:
        assert _typed_rows(store, Pair, "SELECT 'x' AS b, 1 AS a", []) == [Pair(1, "x")]  # order free
        with pytest.raises(RuntimeError, match=r"Pair: .*unknown \['z'\].*missing \['b'\]"):
            _typed_rows(store, Pair, "SELECT 1 AS a, 2 AS z", [])


def test_the_report_imports_without_torch_matplotlib_or_scipy() -> None:
    code = ("import sys, genre_local.report.build, genre_local.store.results, genre_local.commands.report; "
            "print(sorted(m for m in ('torch', 'matplotlib', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_epoch_curves_read_every_runs_epochs_from_the_store(tmp_path: Path) -> None:
    from genre_local.report.views.epoch_curves import VIEW as CURVES
    from genre_local.report.views.epoch_curves import epoch_curves
    from genre_local.store.results import load_epoch_rows
    from tests.support_report import add_dataset, add_run, all_metrics

    with open_store(tmp_path / "s.duckdb") as store:
        add_dataset(store, "d")
        add_dataset(store, "other")
        first = add_run(store, "d", "nrms", "original", 1, all_metrics(0.6), stop_auc=(0.55, 0.61, 0.6),
                        autocast="bfloat16")
        second = add_run(store, "d", "din", "ns+up", 2, all_metrics(0.7), stop_auc=(None, None), stop_split=None,
                         autocast="float32")
        holdout = add_run(store, "d", "nrms", "ns", 1, all_metrics(0.6), stop_auc=(0.7,), stop_split="train-holdout")
        add_run(store, "other", "nrms", "original", 1, all_metrics(0.6), stop_auc=(0.9,))
        rows = load_epoch_rows(store, "d")
    curves = epoch_curves(rows)
    assert [c.run_id for c in curves] == [first, second, holdout]  # in stored order; other datasets left out
    # Regression: every curve was called "dev AUC"; where dev is reported, runs stop on a train hold-out
    assert [c.stop_split for c in curves] == ["dev", None, "train-holdout"]
    assert curves[0].epochs == (1, 2, 3) and curves[0].stop_auc == (0.55, 0.61, 0.6)
    assert curves[0].samples_per_s == (10.0, 20.0, 30.0)
    assert curves[1].stop_auc == (None, None) and curves[1].label == "din ns+up [title,category] seed 2"
    ctx = report_context(ReportInputs("d", [], [], [], FEATURES, 2, epochs=rows))
    result = render_view(CURVES, ctx, tmp_path / "out")
    with (tmp_path / "out" / "epoch_curves.csv").open(newline="") as handle:
        records = list(csv.DictReader(handle))
    assert [(r["run_id"], r["epoch"], r["dev_auc"], r["stop_split"], r["autocast"]) for r in records] == [
        (first, "1", "0.55", "dev", "bfloat16"), (first, "2", "0.61", "dev", "bfloat16"),
        (first, "3", "0.6", "dev", "bfloat16"), (second, "1", "", "", "float32"), (second, "2", "", "", "float32"),
        (holdout, "1", "0.7", "train-holdout", "")]
    # the throughput depends on it: each run says whether it trained under bf16 autocast
    assert [c.autocast for c in curves] == ["bfloat16", "float32", None]
    autocast_cells = list(result.tables[0].columns[-1].cells)
    assert result.tables[0].columns[-1].header == "autocast" and autocast_cells == ["bfloat16", "float32", "not recorded"]
    assert "(dev/train-holdout)" in str(result.tables[0].title)
    png = (tmp_path / "out" / "epoch_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 15_000
    assert result.plot == tmp_path / "out" / "epoch_curves.png"
    empty = render_view(CURVES, report_context(inputs()), tmp_path / "none")
    assert empty.skipped and "no training runs" in empty.note and not (tmp_path / "none").exists()


def test_epoch_curves_leave_out_superseded_runs_as_the_main_tables_do(tmp_path: Path) -> None:
    """Regression: the training curves listed the older run of a seed trained twice, unmarked,
    though every other view counts the newest run of a configuration and seed only."""
    from genre_local.report.views.epoch_curves import VIEW as CURVES
    from genre_local.store.results import load_epoch_rows, load_metric_rows
    from tests.support_report import add_dataset, add_run, all_metrics

    with open_store(tmp_path / "s.duckdb") as store:
        add_dataset(store, "d")
        old = add_run(store, "d", "nrms", "ns", 1, all_metrics(0.6), stop_auc=(0.5,), source=("m", "compact"))
        new = add_run(store, "d", "nrms", "ns", 1, all_metrics(0.7), stop_auc=(0.6,), source=("m", "compact"))
        other = add_run(store, "d", "nrms", "ns", 1, all_metrics(0.7), stop_auc=(0.6,), source=("q", "paper"))
        seed2 = add_run(store, "d", "nrms", "ns", 2, all_metrics(0.7), stop_auc=(0.6,), source=("m", "compact"))
        ctx = report_context(ReportInputs("d", load_metric_rows(store, "d"), [], [], FEATURES, 2,
                                          epochs=load_epoch_rows(store, "d")))
    assert ctx.index.superseded_runs() == 1
    result = render_view(CURVES, ctx, tmp_path / "out")
    with (tmp_path / "out" / "epoch_curves.csv").open(newline="") as handle:
        records = list(csv.DictReader(handle))
    assert [r["run_id"] for r in records] == [new, other, seed2]  # not `old`
    # Regression: the CSV had no source column, so two LLMs' runs of one seed looked alike there.
    assert [r["generation_source"] for r in records] == ["m/compact", "q/paper", "m/compact"]
    assert old not in [row[0] for row in result.records.rows]
    assert "1 older run(s) left out" in str(result.tables[0].caption)
    # Two sources' runs of one seed are two configurations, told apart in their labels.
    labels = [row for row in result.tables[0].columns[1].cells]
    assert labels[:2] == ["nrms ns (m/compact) [title,category] seed 1", "nrms ns (q/paper) [title,category] seed 1"]


def test_profile_fidelity_view_shows_chance_and_ratio_and_tolerates_old_rows() -> None:
    from genre_local.report.views import profile_fidelity
    from genre_local.store.results import FidelityRow

    new = FidelityRow("r2", "llama", 1, 0.3, 0.5, 0.1, 40, None, 0.1, 0.25, 0.0)
    old = FidelityRow("r1", "llama", 1, 0.15, 0.2, 0.0, 40, None)  # stored before migration 007
    records = profile_fidelity._records([new, old])
    by_run = {row[0]: dict(zip(records.header, row)) for row in records.rows}
    assert by_run["r2"]["chance_precision_at_3"] == 0.1
    assert by_run["r2"]["precision_at_3_ratio_to_chance"] == pytest.approx(3.0)
    assert by_run["r2"]["recall_ratio_to_chance"] == pytest.approx(2.0)
    assert by_run["r2"]["region_accuracy_ratio_to_chance"] == float("inf")  # above a chance of 0
    assert by_run["r1"]["chance_recall"] is None and by_run["r1"]["recall_ratio_to_chance"] is None
    assert profile_fidelity._cell(0.3, 0.1) == "0.300 (chance 0.100, 3.0x)"
    assert profile_fidelity._cell(0.15, None) == "0.150"


def test_a_title_wider_than_its_figure_is_saved_whole(tmp_path: Path) -> None:
    # The demo's one-model bar charts cut their titles at the canvas edge ("er original, new...").
    from matplotlib.image import imread

    from genre_local.report.figures import figure, save

    fig = figure(2.0, 1.5)
    ax = fig.add_subplot()
    ax.bar([0], [1.0])
    ax.set_title("demo: AUC gain over original, new (1-5 history) vs warm users (Table 6)")
    width = imread(save(fig, tmp_path / "narrow.png")).shape[1]
    # The canvas is 2.0 in x 110 dpi = 220 px; the title alone, ~70 characters at 12 pt, is
    # over 400 px, all of which the saved image must hold.
    assert width > 400


def test_fig7_says_how_many_seeds_a_point_averages_and_marks_auc_chance() -> None:
    """Regression: Fig. 7 named neither the seeds behind its points and error bars nor chance,
    so an `ng` run below AUC 0.5 (as in the demo) looked like a mere dip."""
    from genre_local.report.runs import ConfigKey
    from genre_local.report.views.ng_k import CurvePoint, draw_ng_k

    key = ConfigKey("nrms", "ng", 2, FEATURES)
    points = [CurvePoint("nrms", k, metric, Summary({1: value, 2: value + 0.01}), "ng", key)
              for k, value in ((0, 0.56), (2, 0.47)) for metric in ("auc", "ndcg@10")]
    auc_axes, ndcg_axes = draw_ng_k(points, "d").axes
    assert auc_axes.get_ylabel() == "AUC\n(mean ± std of 2 seeds)"
    assert ndcg_axes.get_ylabel().endswith("\n(mean ± std of 2 seeds)")
    chance = [line for line in auc_axes.get_lines() if list(line.get_ydata()) == [0.5, 0.5]]
    assert len(chance) == 1 and "chance (AUC 0.5)" in [t.get_text() for t in auc_axes.texts]
    assert not [line for line in ndcg_axes.get_lines() if list(line.get_ydata()) == [0.5, 0.5]]
