"""PNG figures of the views (matplotlib, Agg canvas, no pyplot global state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from genre_local.report.rows import METRIC_LABELS, model_kind, model_sort_key
from genre_local.report.views import AblationRow, ChainRow, Comparison, CostRow, CurvePoint, VariantTable

Series = tuple[str, list[float | None], list[float | None]]  # label, values, error bars


def _figure(width: float, height: float):  # -> matplotlib.figure.Figure
    # A bare Figure renders through Agg on savefig; no backend switch, no pyplot registry.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _model_label(model: str) -> str:
    kind = model_kind(model)
    return model.upper() if kind == "other" else f"{model.upper()}\n{kind}"


def _grouped_bars(ax, categories: Sequence[str], series: list[Series], zero_line: bool) -> None:
    n = max(len(series), 1)
    width = 0.8 / n
    lows, highs = [], []
    for i, (label, values, errors) in enumerate(series):
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(categories))]
        ys = [float("nan") if v is None else v for v in values]
        errs = [0.0 if e is None else e for e in errors]
        ax.bar(xs, ys, width * 0.92, label=label, yerr=errs if any(errs) else None, capsize=3)
        for v, e in zip(values, errs):
            if v is not None:
                lows.append(v - e)
                highs.append(v + e)
    ax.set_xticks(range(len(categories)), list(categories))
    ax.set_xlim(-0.5, len(categories) - 0.5)  # keep empty categories in view
    for j in range(len(categories)):
        if all(values[j] is None for _, values, _ in series):
            # Say so rather than leave a silent gap that reads as a zero.
            ax.annotate("not trained", (j, 0), xycoords="data" if zero_line else ("data", "axes fraction"),
                        xytext=(0, 4), textcoords="offset points", ha="center", va="bottom", fontsize=8,
                        color="gray")
    if zero_line:
        ax.axhline(0.0, color="black", linewidth=0.8)
    elif lows:
        # Absolute metrics sit far from 0: zoom so the differences are visible.
        span = max(highs) - min(lows) or abs(max(highs)) * 0.05 or 0.01
        ax.set_ylim(min(lows) - 0.25 * span, max(highs) + 0.35 * span)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _legend(ax) -> None:
    # Outside the axes, right of the plot: it never hides a bar, however many series.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_variants(tables: list[VariantTable], dataset: str, path: Path) -> Path:
    """Tables 3-5 at a glance: AUC gain of each variant over original, per model."""
    models = sorted({c.model for t in tables for c in t.comparisons}, key=model_sort_key)
    series: list[Series] = []
    for table in tables:
        by_model = {c.model: c for c in table.comparisons if c.metric == "auc"}
        series.append((table.variant, [by_model[m].improvement if m in by_model else None for m in models],
                       [None] * len(models)))
    fig = _figure(max(6.0, 1.1 * len(models) + 2.5), 4.2)
    ax = fig.add_subplot()
    _grouped_bars(ax, [_model_label(m) for m in models], series, zero_line=True)
    ax.set_title(f"{dataset}: AUC gain over original per model (Tables 3–5)")
    ax.set_ylabel("AUC(variant) − AUC(original)")
    ax.set_xlabel("model")
    _legend(ax)
    return _save(fig, path)


def plot_user_groups(comparisons: list[Comparison], dataset: str, path: Path) -> Path:
    """Table 6: AUC gain for new and warm users."""
    auc = [c for c in comparisons if c.metric == "auc"]
    models = sorted({c.model for c in auc}, key=model_sort_key)
    keys = sorted({(c.other_key.variant, c.group) for c in auc}, key=lambda k: (k[0] != "ng", k[0], k[1]))
    series: list[Series] = []
    for variant, group in keys:
        by_model = {c.model: c for c in auc if (c.other_key.variant, c.group) == (variant, group)}
        series.append((f"{variant}: {group} users", [by_model[m].improvement if m in by_model else None
                                                     for m in models], [None] * len(models)))
    fig = _figure(max(6.0, 1.1 * len(models) + 2.5), 4.2)
    ax = fig.add_subplot()
    _grouped_bars(ax, [_model_label(m) for m in models], series, zero_line=True)
    ax.set_title(f"{dataset}: AUC gain over original, new (≤5 history) vs warm users (Table 6)")
    ax.set_ylabel("AUC(variant) − AUC(original)")
    ax.set_xlabel("model")
    _legend(ax)
    return _save(fig, path)


def plot_ng_k(points: list[CurvePoint], dataset: str, path: Path, metrics: Sequence[str] = ("auc", "ndcg@10")) -> Path:
    """Fig. 7: metric vs number of synthetic news per cold user, one line per model."""
    fig = _figure(5.0 * len(metrics) + 1.5, 4.0)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    models = sorted({p.model for p in points}, key=model_sort_key)
    ks = sorted({p.ng_k for p in points})
    for ax, metric in zip(axes, metrics):
        for model in models:
            line = sorted((p for p in points if p.model == model and p.metric == metric), key=lambda p: p.ng_k)
            if not line:
                continue
            ax.errorbar([p.ng_k for p in line], [p.summary.mean for p in line],
                        yerr=[p.summary.std or 0.0 for p in line], marker="o", capsize=3, label=model.upper())
        ax.set_xticks(ks)
        ax.set_xlabel("synthetic news per cold user (K)")
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.set_title(METRIC_LABELS[metric])
        ax.grid(alpha=0.3)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.suptitle(f"{dataset}: effect of the number of generated news (Fig. 7)")
    return _save(fig, path)


def plot_chain(rows: list[ChainRow], dataset: str, path: Path) -> Path:
    """Table 7: AUC of original, one-pass and chain-based generation per model."""
    auc = {r.model: r for r in rows if r.metric == "auc"}
    models = sorted(auc, key=model_sort_key)
    series: list[Series] = [
        ("original", [auc[m].original.mean for m in models], [auc[m].original.std for m in models]),
        ("one-pass (ng)", [auc[m].one_pass.mean if auc[m].one_pass else None for m in models],
         [auc[m].one_pass.std if auc[m].one_pass else None for m in models]),
        ("chain (UP → NG)", [auc[m].chain.mean for m in models], [auc[m].chain.std for m in models]),
    ]
    fig = _figure(max(6.0, 1.3 * len(models) + 2.5), 4.2)
    ax = fig.add_subplot()
    _grouped_bars(ax, [_model_label(m) for m in models], series, zero_line=False)
    ax.set_title(f"{dataset}: chain-based vs one-pass generation (Table 7)")
    ax.set_ylabel("AUC (mean ± std over seeds)")
    ax.set_xlabel("model")
    _legend(ax)
    return _save(fig, path)


def plot_ablation(rows: list[AblationRow], dataset: str, path: Path) -> Path:
    """Fig. 6: AUC per model for each (variant, feature set) trained."""
    auc = [r for r in rows if r.metric == "auc"]
    models = sorted({r.model for r in auc}, key=model_sort_key)
    combos = sorted({(r.variant, r.features) for r in auc}, key=lambda c: (c[0] != "original", c[0], len(c[1]), c[1]))
    cells = {(r.model, r.variant, r.features): r.summary for r in auc}
    series: list[Series] = []
    for variant, features in combos:
        got = [cells.get((m, variant, features)) for m in models]
        series.append((f"{variant}: {features}", [s.mean if s else None for s in got],
                       [s.std if s else None for s in got]))
    fig = _figure(max(6.0, 1.3 * len(models) + 4.0), 4.2)
    ax = fig.add_subplot()
    _grouped_bars(ax, [_model_label(m) for m in models], series, zero_line=False)
    ax.set_title(f"{dataset}: news features (Fig. 6)")
    ax.set_ylabel("AUC (mean ± std over seeds)")
    ax.set_xlabel("model")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title="variant: features",
              title_fontsize=8)
    return _save(fig, path)


def plot_cost(rows: list[CostRow], dataset: str, path: Path) -> Path:
    """Table 8: cost per scheme and the cost conversion rate for matching and ranking models."""
    unit = rows[0].unit if rows else "engine-hour"
    schemes = [r.scheme for r in rows]
    fig = _figure(11.0, 4.2)
    left, right = fig.subplots(1, 2)
    left.bar(schemes, [r.cost_units for r in rows], color="tab:gray")
    left.set_title("generation cost per scheme")
    left.set_ylabel("cost (price units)" if unit == "price" else "engine hours")
    left.set_xlabel("GENRE scheme")
    left.grid(axis="y", alpha=0.3)
    left.set_axisbelow(True)
    series: list[Series] = [
        ("matching models", [r.matching_ccr for r in rows], [None] * len(rows)),
        ("ranking models", [r.ranking_ccr for r in rows], [None] * len(rows)),
    ]
    _grouped_bars(right, schemes, series, zero_line=True)
    right.set_title("cost conversion rate (CCR)")
    right.set_ylabel("AUC gain per " + ("price unit" if unit == "price" else "engine hour"))
    right.set_xlabel("GENRE scheme")
    _legend(right)
    fig.suptitle(f"{dataset}: cost and cost conversion rate (Table 8)")
    return _save(fig, path)
