"""One self-contained index.html per dataset: every view, the runs behind the numbers, cost,
generation samples, and links between them.

No script, no stylesheet or image from elsewhere: plots are embedded as base64 PNG, so the page
opens from disk on a machine without network. Every stored string (titles, outputs, errors,
ids) goes through `esc`: titles are user data and outputs are model data.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table
from rich.text import Text

from genre_local.files import write_atomically
from genre_local.report.format import fmt_known
from genre_local.report.naming import kind_of, variant_tasks
from genre_local.report.runs import ConfigKey
from genre_local.report.sample_tables import TASK_TITLES
from genre_local.report.samples import Sample, SampleSet
from genre_local.report.view import Records, ReportContext

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 2rem 4rem; color: #1d1d1f; background: #fff; }
header { border-bottom: 2px solid #345; margin-bottom: 1rem; }
h1 { margin: 1rem 0 .3rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccd; } h3 { margin-top: 1.4rem; }
nav a { margin-right: .9rem; white-space: nowrap; } nav .skipped { color: #888; }
table { border-collapse: collapse; margin: .6rem 0 1rem; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; }
th, td { border: 1px solid #ccd; padding: .2rem .5rem; vertical-align: top; text-align: left; }
th { background: #eef1f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.section-end td { border-bottom: 2px solid #778; }
td.text { white-space: pre-wrap; max-width: 32rem; }
img { max-width: 100%; border: 1px solid #dde; }
.note { color: #666; font-style: italic; } .bad { color: #a00; }
details { margin: .4rem 0 1rem; } summary { cursor: pointer; color: #345; }
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def anchor(kind: str, raw: str) -> str:
    """An element id for a stored id: readable when the id is tame, else a digest (never raw)."""
    if re.fullmatch(r"[A-Za-z0-9_.:@-]{1,80}", raw):
        return f"{kind}-{raw}"
    return f"{kind}-{hashlib.sha1(raw.encode('utf-8')).hexdigest()[:16]}"


def link(kind: str, raw: str, text: str | None = None) -> str:
    return f'<a href="#{esc(anchor(kind, raw))}">{esc(raw if text is None else text)}</a>'


def _cell_text(cell: object) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def rich_table_html(table: Table) -> str:
    """A Rich table (as the terminal shows it) as an HTML table with the same title, cells and sections."""
    columns = table.columns
    heads = "".join(f"<th>{esc(_cell_text(c.header))}</th>" for c in columns)
    cells = [list(c.cells) for c in columns]
    body = []
    for i, row in enumerate(table.rows):
        klass = ' class="section-end"' if row.end_section else ""
        tds = "".join(
            f'<td class="{"num" if columns[j].justify == "right" else "text"}">{esc(_cell_text(cells[j][i]))}</td>'
            for j in range(len(columns)))
        body.append(f"<tr{klass}>{tds}</tr>")
    caption = f"<caption>{esc(_cell_text(table.title))}</caption>" if table.title else ""
    return f"<table>{caption}<thead><tr>{heads}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def simple_table(header: Sequence[str], rows: Iterable[Sequence[str]], caption: str | None = None) -> str:
    """Cells are HTML already (escaped or links); headers are plain text."""
    heads = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table>"


def records_html(records: Records) -> str:
    return simple_table(records.header, ([esc("" if v is None else v) for v in row] for row in records.rows))


def png_html(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}"></figure>'


@dataclass(frozen=True)
class ViewSection:
    """What build.py hands over per view: enough to render its section."""

    key: str
    title: str
    note: str | None
    tables: list[Table]
    records: Records | None
    csv_name: str | None
    plot: Path | None
    configs: tuple[ConfigKey, ...]
    generation_runs: tuple[str, ...]
    settings_notes: tuple[str, ...] = ()  # runs behind the numbers trained with other settings


def llm_source(ctx: ReportContext, key: ConfigKey) -> str:
    """Which LLM wrote the generations a configuration read: the source its runs recorded
    (migration 006); for runs stored before, the store's present sources per task; '—' for original."""
    tasks = variant_tasks(key.variant)
    if not tasks:
        return "—"
    if key.source:
        return key.source
    by_task: dict[str, list[str]] = defaultdict(list)
    for source in ctx.inputs.variant_sources:
        if source.task in tasks:
            by_task[source.task].append(source.model)
    models = {m for ms in by_task.values() for m in ms}
    if not models:
        return "none stored"
    if len(models) == 1 and len(by_task) == len(tasks):
        return next(iter(models))
    return "; ".join(f"{t}: {', '.join(sorted(by_task[t])) or 'none stored'}" for t in tasks)


def gen_link(ctx: ReportContext, run_id: str) -> str:
    """A link to the generation run's row, or the bare id when no such run is stored (a link
    must never point nowhere)."""
    if any(r.run_id == run_id for r in ctx.inputs.generation_runs):
        return link("gen", run_id)
    return esc(run_id)


def _seed_links(ctx: ReportContext, key: ConfigKey) -> str:
    runs = ctx.index.run_ids.get(key, {})
    return " ".join(link("run", rid, str(seed)) if rid else esc(seed) for seed, rid in sorted(runs.items()))


def _config_row(ctx: ReportContext, key: ConfigKey) -> list[str]:
    splits = "/".join(sorted(ctx.index.splits.get(key, set()))) or "-"
    return [esc(key.model), esc(key.variant), esc(key.ng_k), esc(key.features), esc(llm_source(ctx, key)),
            esc(splits), _seed_links(ctx, key)]


CONFIG_HEADER = ("model", "variant", "K", "features", "LLM source", "split", "seeds (runs)")


def _view_section(ctx: ReportContext, section: ViewSection) -> str:
    parts = [f'<section id="{esc(anchor("view", section.key))}"><h2>{esc(section.title)}</h2>']
    if section.note is not None:
        parts.append(f'<p class="note">skipped: {esc(section.note)}</p></section>')
        return "".join(parts)
    if section.settings_notes:
        parts.append('<div class="bad"><p>Not like for like: runs behind these numbers were trained with other '
                     'settings (the CSV column <code>settings_differ</code> marks their rows):</p><ul>'
                     + "".join(f"<li>{esc(n)}</li>" for n in section.settings_notes) + "</ul></div>")
    parts.extend(rich_table_html(t) for t in section.tables)
    if section.plot is not None:
        parts.append(png_html(section.plot, section.title))
    if section.configs:
        parts.append("<h3>Runs behind these numbers</h3>")
        parts.append(simple_table(CONFIG_HEADER, (_config_row(ctx, k) for k in section.configs)))
    if section.generation_runs:
        parts.append("<p>Generation runs: " + ", ".join(gen_link(ctx, r) for r in section.generation_runs) + "</p>")
    if section.records is not None:
        parts.append(f"<details><summary>Every number, unrounded ({esc(section.csv_name)})</summary>"
                     f"{records_html(section.records)}</details>")
    parts.append("</section>")
    return "".join(parts)


def _runs_section(ctx: ReportContext, sections: Sequence[ViewSection]) -> str:
    used: dict[ConfigKey, list[ViewSection]] = defaultdict(list)
    for s in sections:
        for key in s.configs:
            used[key].append(s)
    rows = []
    for key in ctx.index.keys():
        for seed, rid in sorted(ctx.index.run_ids.get(key, {}).items()):
            ident = f' id="{esc(anchor("run", rid))}"' if rid else ""
            views = ", ".join(link("view", s.key, s.title) for s in used.get(key, []))
            rows.append([f"<span{ident}>{esc(rid or '-')}</span>", esc(key.model), esc(kind_of(key.model)),
                         esc(key.variant), esc(key.ng_k), esc(key.features), esc(seed),
                         esc(ctx.index.seed_splits.get(key, {}).get(seed, "-")), esc(llm_source(ctx, key)),
                         views or '<span class="note">none</span>'])
    if not rows:
        return '<section id="runs"><h2>Training runs</h2><p class="note">no training runs stored</p></section>'
    header = ("run", "model", "kind", "variant", "K", "features", "seed", "split", "LLM source", "in views")
    return ('<section id="runs"><h2>Training runs</h2><p>The run each reported number comes from (the newest run '
            'of a seed). LLM source: the model whose generations the variant reads in the store now.</p>'
            + simple_table(header, rows) + "</section>")


def _sample_anchor(s: SampleSet) -> str:
    return anchor("samples", f"{s.task}:{s.source}")


def _generation_section(ctx: ReportContext) -> str:
    runs = ctx.inputs.generation_runs
    if not runs:
        return ('<section id="generation-runs"><h2>Generation runs and cost</h2>'
                '<p class="note">no generation runs stored</p></section>')
    samples = {(s.task, s.llm, s.prompt_set, s.method): s for s in ctx.inputs.samples}
    seen: set[str] = set()
    rows = []
    for r in runs:
        ident = "" if r.run_id in seen else f' id="{esc(anchor("gen", r.run_id))}"'
        seen.add(r.run_id)
        sample = samples.get((r.task, r.model, r.prompt_set, r.method))
        task = f'<a href="#{esc(_sample_anchor(sample))}">{esc(r.task)}</a>' if sample else esc(r.task)
        rows.append([f"<span{ident}>{esc(r.run_id)}</span>", task, esc(r.source), esc(r.backend), esc(r.round),
                     esc(f"{r.requests:,}"), esc(f"{r.valid:,}"), esc(f"{r.invalid:,}"),
                     esc(fmt_known(r.prompt_tokens, ",")), esc(fmt_known(r.completion_tokens, ",")),
                     esc(fmt_known(r.engine_seconds, ",.1f")),
                     esc(fmt_known(None if r.wall_seconds is None or r.startup_seconds is None
                               else r.wall_seconds + r.startup_seconds, ",.1f")),
                     # no price: "—" for a local run; an imported run's money is unknown
                     esc(fmt_known(r.cost, ".4g") if r.cost is not None or r.provenance == "imported" else "—"),
                     esc(r.provenance)])
    header = ("run", "task", "LLM source", "backend", "round", "requests", "valid", "invalid", "tokens in",
              "tokens out", "engine s", "wall+start s", "cost", "provenance")
    return ('<section id="generation-runs"><h2>Generation runs and cost</h2>'
            '<p>One row per generate command, task and round, and one per import; Table 8 sums them per '
            f'GENRE scheme ({link("view", "cost", "cost view")}). "unknown": the run did not record it '
            '(an imported file without that column), never counted as 0.</p>'
            + simple_table(header, rows) + "</section>")


def _lines(values: Sequence[str]) -> str:
    return "<br>".join(esc(v) for v in values) if values else "—"


def _history(s: Sample) -> str:
    more = s.history_length - len(s.history)
    return _lines(s.history) + (f'<br><span class="note">(+{more} older)</span>' if more > 0 else "")


def _profile(s: Sample) -> str:
    return f"topics: {esc(', '.join(s.topics) or '—')}<br>regions: {esc(', '.join(s.regions) or '—')}"


def _truth(s: Sample) -> str:
    if s.truth is None:
        return "—"
    f = s.truth.fidelity
    return (f"topics: {esc(', '.join(s.truth.topics))}<br>region: {esc(s.truth.region or '—')}<br>"
            f"P@3 {f.precision_at_3:.2f}, recall {f.recall:.2f}, region {'yes' if f.region_accuracy else 'no'}")


def _items(s: Sample) -> str:
    return "<br>".join(f"[{esc(i.category)}] <b>{esc(i.title)}</b><br>{esc(i.abstract)}" for i in s.items) or "—"


def _sample_table(ctx: ReportContext, s_set: SampleSet) -> str:
    has_truth = any(s.truth for s in s_set.samples)
    if s_set.task == "summarize":
        header: tuple[str, ...] = ("news", "original title", "enhanced title", "run")
        rows = [[esc(s.input_id), esc(s.original_title), esc(s.enhanced_title), gen_link(ctx, s.run_id)]
                for s in s_set.samples]
    elif s_set.task == "profile":
        header = ("user", "history (latest titles)", "profile") + (("true interests, fidelity",) if has_truth else ()) + ("run",)
        rows = [[esc(s.input_id), _history(s), _profile(s), *([_truth(s)] if has_truth else []), gen_link(ctx, s.run_id)]
                for s in s_set.samples]
    elif s_set.task == "chain":
        header = ("user", "history (latest titles)", "profile read", "synthetic news", "run")
        rows = [[esc(s.input_id), _history(s), _profile(s), _items(s), gen_link(ctx, s.run_id)] for s in s_set.samples]
    else:
        header = ("user", "history (latest titles)", "synthetic news", "run")
        rows = [[esc(s.input_id), _history(s), _items(s), gen_link(ctx, s.run_id)] for s in s_set.samples]
    return simple_table(header, rows)


def _samples_section(ctx: ReportContext) -> str:
    sets = ctx.inputs.samples
    parts = ['<section id="samples"><h2>Generation samples</h2>']
    if not sets:
        parts.append('<p class="note">no generations stored</p></section>')
        return "".join(parts)
    parts.append(f"<p>Per task and generation source (LLM/prompt set), a seeded sample (seed {esc(sets[0].seed)}) of inputs beside "
                 "their latest valid outputs, then of the outputs that stayed invalid.</p>")
    for s_set in sets:
        parts.append(f'<h3 id="{esc(_sample_anchor(s_set))}">{esc(TASK_TITLES.get(s_set.task, s_set.task))} '
                     f'— source {esc(s_set.source)}</h3>')
        parts.append(f"<p>{len(s_set.samples)} of {s_set.valid_inputs:,} valid outputs; "
                     f"{s_set.invalid_inputs:,} inputs stayed invalid.</p>")
        if s_set.samples:
            parts.append(_sample_table(ctx, s_set))
        if s_set.invalid:
            parts.append(simple_table(
                ("input", "tries", "error", "raw output", "run"),
                ([esc(i.input_id), esc(i.attempt), f'<span class="bad">{esc(i.error)}</span>',
                  f'<span class="text">{esc(i.raw_output)}</span>', gen_link(ctx, i.run_id)] for i in s_set.invalid),
                caption="invalid outputs"))
    parts.append("</section>")
    return "".join(parts)


def render_html(ctx: ReportContext, sections: Sequence[ViewSection]) -> str:
    nav = [link("view", s.key, s.title) if s.note is None else
           f'<a class="skipped" href="#{esc(anchor("view", s.key))}">{esc(s.title)} (skipped)</a>' for s in sections]
    nav += ['<a href="#runs">Training runs</a>', '<a href="#generation-runs">Generation runs and cost</a>',
            '<a href="#samples">Generation samples</a>']
    settings = (f"split {esc(ctx.index.split_label())}, main feature set {esc(ctx.features or '—')}, "
                f"K = {esc(ctx.k)} for the ng/chain tables")
    body = "".join(_view_section(ctx, s) for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>GENRE report: {esc(ctx.dataset)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>GENRE report: {esc(ctx.dataset)}</h1><p>{settings}</p><nav>{' '.join(nav)}</nav></header>"
        f"{body}{_runs_section(ctx, sections)}{_generation_section(ctx)}{_samples_section(ctx)}"
        "</body></html>\n"
    )


def write_html(path: Path, ctx: ReportContext, sections: Sequence[ViewSection]) -> Path:
    # Write beside, then rename: a reader never sees half a page.
    page = render_html(ctx, sections)
    return write_atomically(path, lambda target: target.write_text(page, encoding="utf-8"))
