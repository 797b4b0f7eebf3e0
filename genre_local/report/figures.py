"""Shared drawing for the views' PNG figures (matplotlib, Agg canvas, no pyplot global state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from genre_local.files import write_atomically
from genre_local.report.naming import kind_of

Series = tuple[str, list[float | None], list[float | None]]  # label, values, error bars


def figure(width: float, height: float):  # -> matplotlib.figure.Figure
    # A bare Figure renders through Agg on savefig; no backend switch, no pyplot registry.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def model_label(model: str) -> str:
    kind = kind_of(model)
    return model.upper() if kind == "other" else f"{model.upper()}\n{kind}"


def grouped_bars(ax, categories: Sequence[str], series: list[Series], zero_line: bool,
                 empty_notes: Sequence[str] | None = None) -> list[str]:
    """Bars per category, one per series; returns the labels of the series left out because
    they have no value at all (a legend entry with no bar would claim one). A category with
    no bar says why in its place: `empty_notes[j]`, else "not trained"."""
    drawn = [s for s in series if any(v is not None for v in s[1])]
    n = max(len(drawn), 1)
    width = 0.8 / n
    lows, highs = [], []
    for i, (label, values, errors) in enumerate(drawn):
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
            note = empty_notes[j] if empty_notes is not None else "not trained"
            ax.annotate(note, (j, 0), xycoords="data" if zero_line else ("data", "axes fraction"),
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
    return [label for label, values, _ in series if all(v is None for v in values)]


def legend_outside(ax, notes: Sequence[str] = ()) -> None:
    """The legend outside the axes, right of the plot: it never hides a bar, however many series.
    `notes` (e.g. "ranking models: not trained") go below it, at the axes' lower right corner,
    where the series that have no bars are named without a legend swatch."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if notes:
        ax.annotate("\n".join(notes), (1.01, 0.0), xycoords="axes fraction", ha="left", va="bottom", fontsize=8,
                    color="gray")


def missing_notes(labels: Sequence[str], why: str = "not trained") -> list[str]:
    """One note per series drawn without bars: "<label>: <why>"."""
    return [f"{label}: {why}" for label in labels]


def save(fig, path: Path) -> Path:
    # "tight": an axes title wider than a narrow figure (one model, a legend beside it) would
    # otherwise be cut at the canvas edge; the saved image grows to hold every artist.
    return write_atomically(path, lambda target: fig.savefig(target, bbox_inches="tight", pad_inches=0.1))
