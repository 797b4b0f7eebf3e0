"""Generation samples as Rich tables: input and output side by side (`generations show`)."""

from __future__ import annotations

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from genre_local.report.samples import Sample, SampleSet

TASK_TITLES = {
    "summarize": "news summarizer: original vs enhanced title",
    "profile": "user profiler: history vs profile",
    "news": "personalized news generator: cold user's history vs synthetic news",
    "chain": "chain-based generator: history and profile vs synthetic news",
}


def _cells(*values: str) -> list[Text]:
    # Titles, outputs and errors are user and model data: never read as Rich markup ("[news]").
    return [Text(v) for v in values]


def _lines(values: tuple[str, ...]) -> str:
    return "\n".join(values) if values else "—"


def _history(s: Sample) -> str:
    more = s.history_length - len(s.history)
    return _lines(s.history) + (f"\n(+{more} older)" if more > 0 else "")


def _profile(s: Sample) -> str:
    return f"topics: {', '.join(s.topics) or '—'}\nregions: {', '.join(s.regions) or '—'}"


def _truth(s: Sample) -> str:
    if s.truth is None:
        return "—"
    f = s.truth.fidelity
    return (f"topics: {', '.join(s.truth.topics)}\nregion: {s.truth.region or '—'}\n"
            f"P@3 {f.precision_at_3:.2f}, recall {f.recall:.2f}, region {'yes' if f.region_accuracy else 'no'}")


def _items(s: Sample) -> str:
    return "\n".join(f"[{i.category}] {i.title}\n  {i.abstract}" for i in s.items) or "—"


def sample_table(sample_set: SampleSet) -> Table:
    """The valid outputs of one (task, LLM) sample, one row per input."""
    s_set = sample_set
    title = (f"{TASK_TITLES.get(s_set.task, s_set.task)} — source {s_set.source}, "
             f"{len(s_set.samples)} of {s_set.valid_inputs} valid (seed {s_set.seed})")
    table = Table(title=escape(title), title_justify="left", show_lines=True)
    has_truth = any(s.truth for s in s_set.samples)
    if s_set.task == "summarize":
        columns = ["news", "original title", "enhanced title"]
    elif s_set.task == "profile":
        columns = ["user", "history (latest titles)", "profile"] + (["true interests, fidelity"] if has_truth else [])
    elif s_set.task == "chain":
        columns = ["user", "history (latest titles)", "profile read", "synthetic news"]
    else:
        columns = ["user", "history (latest titles)", "synthetic news"]
    for name in columns:
        table.add_column(name, overflow="fold")
    for s in s_set.samples:
        if s_set.task == "summarize":
            table.add_row(*_cells(s.input_id, s.original_title or "", s.enhanced_title or ""))
        elif s_set.task == "profile":
            table.add_row(*_cells(s.input_id, _history(s), _profile(s), *([_truth(s)] if has_truth else [])))
        elif s_set.task == "chain":
            table.add_row(*_cells(s.input_id, _history(s), _profile(s), _items(s)))
        else:
            table.add_row(*_cells(s.input_id, _history(s), _items(s)))
    return table


def invalid_table(sample_set: SampleSet) -> Table:
    s_set = sample_set
    table = Table(title=escape(f"invalid outputs — {s_set.task}, source {s_set.source}, {len(s_set.invalid)} of "
                               f"{s_set.invalid_inputs} (seed {s_set.seed})"), title_justify="left", show_lines=True)
    for name in ("input", "tries", "error", "raw output"):
        table.add_column(name, overflow="fold")
    for i in s_set.invalid:
        table.add_row(*_cells(i.input_id, str(i.attempt), i.error, i.raw_output))
    return table


def sample_set_renderables(sample_set: SampleSet) -> list[RenderableType]:
    """The valid sample (or a line saying there is none), then the invalid one when any output
    stayed invalid."""
    s_set = sample_set
    out: list[RenderableType] = [sample_table(s_set)] if s_set.samples else [
        Text(f"{s_set.task}, source {s_set.source}: no valid output stored", style="dim")]
    return out + ([invalid_table(s_set)] if s_set.invalid else [])
