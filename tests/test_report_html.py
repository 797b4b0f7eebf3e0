"""index.html: every view, the runs behind the numbers, cost and generation samples in one
offline page; checked as HTML here and in a real headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.report.html import anchor, rich_table_html
from genre_local.store import open_store
from tests.support_generate import DATASET, FakeBackend, build_store, run_fake
from tests.support_report import add_run, all_metrics

runner = CliRunner()
HOSTILE = '<script>alert("x")</script><img src=http://evil/x onerror=alert(1)> & [bold]B[/bold]'
VIEW_KEYS = ("enrichment", "variants", "user_groups", "ng_k", "chain", "feature_ablation", "cost", "profile_fidelity")
PLOTS = 7  # every view but profile fidelity draws one


class Page(HTMLParser):
    """The parts of a page the tests look at: elements by tag, ids, local links, image sources."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        values = dict(attrs)
        if values.get("id"):
            self.ids.append(values["id"])
        if "href" in values:
            self.hrefs.append(values["href"] or "")
        if tag == "img":
            self.srcs.append(values.get("src") or "")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with generations by two LLMs (one never valid), runs for every view, and a
    hostile news title; the report written from it."""
    root = tmp_path_factory.mktemp("html")
    db = build_store(root / "h.duckdb")
    with open_store(db) as store:
        store.conn.execute("UPDATE news SET title = ? WHERE nid = 'N1'", [HOSTILE])
    run_fake(db)
    run_fake(db, backend=FakeBackend(always_bad=True), model_id="bad-model@1234", tasks=("summarize",))
    with open_store(db) as store:
        for seed in (1, 2):
            for model, base in (("nrms", 0.60), ("din", 0.65)):
                g = ("all", "new", "warm")
                add_run(store, DATASET, model, "original", seed, all_metrics(base + seed / 200, groups=g))
                add_run(store, DATASET, model, "ns", seed, all_metrics(base + 0.01 + seed / 100, groups=g))
                add_run(store, DATASET, model, "ng", seed, all_metrics(base + 0.02 + seed / 300, groups=g), ng_k=2)
                add_run(store, DATASET, model, "ng", seed, all_metrics(base + 0.01, groups=g), ng_k=1)
                add_run(store, DATASET, model, "chain", seed, all_metrics(base + 0.03, groups=g), ng_k=2)
                add_run(store, DATASET, model, "ns", seed, all_metrics(base + 0.02, groups=g),
                        features="title,abstract,category")
        store.conn.execute("INSERT INTO profile_fidelity VALUES (?, 'fid-run', 'fake-model', 1, 0.5, 0.5, 0.5, 4, "
                           "TIMESTAMP '2026-01-01 12:00:00', 0.2, 0.25, 0.02)", [DATASET])
    out = root / "rep"
    result = runner.invoke(app, ["--db", str(db), "report", "--dataset", DATASET, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["datasets"][DATASET]["html"] == str(out / "index.html")
    assert f"open in a browser: {out / 'index.html'}" in result.stdout
    return out


def test_every_view_is_a_section_with_its_tables_and_embedded_plot(report_dir: Path) -> None:
    text = (report_dir / "index.html").read_text(encoding="utf-8")
    page = Page(text)
    for key in VIEW_KEYS:
        assert f"view-{key}" in page.ids, key
    assert 'class="note">skipped' not in text
    assert len(page.srcs) == PLOTS
    for src in page.srcs:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1])
        assert data == (report_dir / _png_named(report_dir, data)).read_bytes()  # the PNG written beside
    # The paper's numbers, as the terminal shows them: din original AUC over seeds 0.655, 0.66.
    assert "0.6575 ± 0.0035" in text and "p (paired t)" in text and "Table 8a" in text
    assert page.tags["table"] >= 12


def _png_named(folder: Path, data: bytes) -> str:
    return next(p.name for p in folder.glob("*.png") if p.read_bytes() == data)


def test_the_page_is_offline_and_every_link_lands(report_dir: Path) -> None:
    text = (report_dir / "index.html").read_text(encoding="utf-8")
    page = Page(text)
    assert page.tags.get("script", 0) == 0 and page.tags.get("link", 0) == 0
    assert all(h.startswith("#") for h in page.hrefs)  # nothing outside the page
    missing = {h for h in page.hrefs if h[1:] not in page.ids}
    assert not missing
    assert len(page.ids) == len(set(page.ids))


def test_stored_strings_are_escaped(report_dir: Path) -> None:
    text = (report_dir / "index.html").read_text(encoding="utf-8")
    assert "<script" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "[bold]B[/bold]" in text  # Rich markup is text here, not formatting
    assert "&lt;img src=http://evil/x onerror=alert(1)&gt;" in text
    assert len(Page(text).srcs) == PLOTS  # the hostile <img> did not become an element


def test_runs_behind_the_numbers_link_to_each_run_with_its_llm_source(report_dir: Path) -> None:
    text = (report_dir / "index.html").read_text(encoding="utf-8")
    page = Page(text)
    run_ids = [i for i in page.ids if i.startswith("run-")]
    assert len(run_ids) == 2 * 2 * 6  # seeds x models x configurations
    section = text[text.index('id="view-variants"'):text.index('id="view-user_groups"')]
    rows = re.findall(r"<tr><td>(\w+)</td><td>([\w+]+)</td><td>(\d+)</td><td>[\w,]+</td><td>([^<]*)</td>", section)
    assert ("nrms", "original", "0", "—") in rows
    assert ("nrms", "ns", "0", "fake-model") in rows  # enhanced titles written by fake-model
    assert ("din", "chain", "2", "fake-model") in rows
    assert section.count('href="#run-') == 2 * 2 * 4  # original, ns, ng (K=2), chain: two seeds each
    cost = text[text.index('id="view-cost"'):text.index('id="view-profile_fidelity"')]
    assert 'href="#gen-' in cost
    fidelity = text[text.index('id="view-profile_fidelity"'):text.index('id="runs"')]
    assert 'href="#gen-' in fidelity  # the profile run's own fidelity row
    assert "fid-run" in fidelity and 'href="#gen-fid-run"' not in fidelity  # no such generation run: no link
    # Each fidelity value stands beside its chance level and the ratio to it.
    assert "0.500 (chance 0.200, 2.5x)" in fidelity and "0.500 (chance 0.020, 25.0x)" in fidelity


def test_generation_runs_and_samples_per_task_and_llm(report_dir: Path) -> None:
    text = (report_dir / "index.html").read_text(encoding="utf-8")
    page = Page(text)
    # One sample block per task and generation source (LLM/prompt set), linked from its runs.
    for task in ("summarize", "profile", "news", "chain"):
        assert anchor("samples", f"{task}:fake-model/compact") in page.ids
        assert f'href="#{anchor("samples", f"{task}:fake-model/compact")}"' in text
    assert anchor("samples", "summarize:bad-model@1234/compact") in page.ids
    assert "source fake-model/compact" in text
    samples = text[text.index('id="samples"'):]
    assert "no JSON object in the output" in samples and "Sorry, I cannot help with that." in samples
    assert "Dolphins beat Jets" not in text  # N1's original title was replaced by the hostile one
    assert "P@3 0.33, recall 0.33, region yes" in samples  # U1: 1 of 3 topics true, Florida right
    generation = text[text.index('id="generation-runs"'):text.index('id="samples"')]
    assert generation.count("<tr>") == 1 + 5 and "bad-model@1234" in generation


def test_no_html_writes_no_page(report_dir: Path, tmp_path: Path) -> None:
    db = report_dir.parent / "h.duckdb"
    result = runner.invoke(app, ["--db", str(db), "report", "--dataset", DATASET, "--out", str(tmp_path / "o"),
                                 "--no-html", "--no-plots", "--json"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "o" / "index.html").exists() and (tmp_path / "o" / "variants.csv").exists()
    assert json.loads(result.stdout.strip().splitlines()[-1])["datasets"][DATASET]["html"] is None


def test_a_rich_table_keeps_its_cells_sections_and_alignment() -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="T <1>")
    table.add_column("name")
    table.add_column("value", justify="right")
    table.add_row("a&b", "1")
    table.rows[-1].end_section = True
    table.add_row(Text("[x]"), "2")
    assert rich_table_html(table) == (
        "<table><caption>T &lt;1&gt;</caption><thead><tr><th>name</th><th>value</th></tr></thead><tbody>"
        '<tr class="section-end"><td class="text">a&amp;b</td><td class="num">1</td></tr>'
        '<tr><td class="text">[x]</td><td class="num">2</td></tr></tbody></table>')


def test_anchors_never_carry_raw_ids() -> None:
    assert anchor("run", "run0001") == "run-run0001"
    odd = anchor("run", 'a"b <c>')
    assert re.fullmatch(r"run-[0-9a-f]{16}", odd) and odd != anchor("run", 'a"b <c')


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/setup.sh installs it as root)")
def test_the_page_renders_in_headless_chromium(report_dir: Path, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    url = (report_dir / "index.html").resolve().as_uri()
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400"]
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    page = Page(dom)
    assert all(f"view-{key}" in page.ids for key in VIEW_KEYS)
    assert page.tags["table"] >= 12 and len(page.srcs) == PLOTS
    assert page.tags.get("script", 0) == 0
    shot = tmp_path / "shot.png"
    subprocess.run([*base, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("L"), dtype=float)
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 20  # text, tables and a plot, not a blank page
    assert (pixels < 128).mean() > 0.01  # dark ink somewhere
