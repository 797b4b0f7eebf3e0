"""Issue 9 §2: `genre-local generations import` and `generations list`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.store import open_store
from genre_local.store.generations import GenerationSource, read_enhanced_titles
from genre_local.store.variants import read_variant
from recsys.variants import parse_variant
from tests.support_train import add_generation, make_store

runner = CliRunner()
GPT = GenerationSource("gpt-3.5", "imported")


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return make_store(tmp_path / "s.duckdb", users=6, news_per_cat=2)  # news N1..N8, users U0..U5


def invoke(db: Path, *args: str):
    return runner.invoke(app, ["--db", str(db), "generations", *args], env={"COLUMNS": "200"})


def do_import(db: Path, file: Path, task: str, *extra: str):
    return invoke(db, "import", str(file), "--dataset", "tiny", "--task", task, "--llm", "gpt-3.5", "--json", *extra)


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def stored(db: Path) -> list[tuple]:
    with open_store(db, read_only=True) as store:
        return store.conn.execute(
            "SELECT input_id, task, model, prompt_set, provenance, valid, prompt_tokens, completion_tokens, latency_s, "
            "CAST(parsed AS VARCHAR) FROM generations ORDER BY task, input_id").fetchall()


def test_tsv_of_plain_titles_becomes_a_source_training_can_read(db: Path, tmp_path: Path) -> None:
    file = tmp_path / "titles.tsv"
    file.write_text("id\toutput\tprompt_tokens\tcompletion_tokens\nN1\tA sharper title\t120\t9\nN2\t"
                    '{"title": "JSON title"}\t\t\n', encoding="utf-8")
    result = do_import(db, file, "summarize")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert (payload["source"], payload["stored"], payload["skipped"]) == (GPT.label, 2, 0)
    rows = stored(db)
    assert [r[:6] for r in rows] == [("N1", "summarize", "gpt-3.5", "imported", "imported", True),
                                     ("N2", "summarize", "gpt-3.5", "imported", "imported", True)]
    assert rows[0][6:9] == (120, 9, None) and rows[1][6:9] == (None, None, None)  # costs only where given
    with open_store(db, read_only=True) as store:
        assert read_enhanced_titles(store.conn, "tiny", GPT) == {"N1": "A sharper title", "N2": "JSON title"}
        news = read_variant(store.conn, "tiny", parse_variant("ns"), GPT).news
        titles = dict(zip(news.nids, news.titles, strict=True))
        assert titles["N1"] == "A sharper title" and titles["N2"] == "JSON title"
    # the same file again replaces its rows, never duplicates them
    assert do_import(db, file, "summarize").exit_code == 0
    assert len(stored(db)) == 2


def test_jsonl_profiles_and_news_use_the_tasks_own_json(db: Path, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.jsonl"
    profiles.write_text(
        json.dumps({"user_id": "U1", "topics": ["Health", "finance"], "regions": ["ohio"]}) + "\n\n"
        + json.dumps({"id": "U2", "output": '{"topics": ["travel"], "regions": []}'}) + "\n", encoding="utf-8")
    assert do_import(db, profiles, "profile").exit_code == 0
    news = tmp_path / "news.csv"
    items = [{"title": "Storm hits coast", "abstract": "a", "category": "weather"},
             {"title": "Markets rally", "abstract": "b", "category": "finance"}]
    news.write_text('id,output\nU0,"' + json.dumps({"items": items}).replace('"', '""') + '"\n', encoding="utf-8")
    assert do_import(db, news, "news").exit_code == 0
    parsed = {(r[1], r[0]): json.loads(r[9]) for r in stored(db)}
    assert parsed[("profile", "U1")] == {"topics": ["health", "finance"], "regions": ["Ohio"]}  # normalized by the parser
    assert len(parsed[("news", "U0")]["items"]) == 2


@pytest.mark.parametrize("body,needles", [
    ("id\toutput\nN999\tTitle\n", ["titles.tsv:2: unknown news id 'N999'"]),
    ("id\toutput\nN1\tOne\nN1\tTwo\n", ["titles.tsv:3: duplicate news id 'N1' (first on line 2)"]),
    ("id\toutput\nN1\t{\"headline\": 3}\n", ["titles.tsv:2: invalid summarize output"]),
    ("id\toutput\nN1\t\n", ["titles.tsv:2: no output"]),
    ("id\toutput\tprompt_tokens\nN1\tTitle\tmany\n", ["titles.tsv:2: prompt_tokens 'many' is not a number"]),
    ("nid_x\toutput\nN1\tTitle\n", ["titles.tsv:1: the header has no id column"]),
])
def test_bad_rows_are_file_line_errors_and_store_nothing(db: Path, tmp_path: Path, body: str,
                                                         needles: list[str]) -> None:
    file = tmp_path / "titles.tsv"
    file.write_text(body, encoding="utf-8")
    one_line_error(do_import(db, file, "summarize"), *needles)
    assert stored(db) == []


def test_every_problem_is_counted_and_skip_invalid_stores_the_rest(db: Path, tmp_path: Path) -> None:
    file = tmp_path / "mixed.jsonl"
    lines = [{"id": "N1", "output": "Good one"}, {"id": "N404", "output": "x"}, "not json",
             {"id": "N2", "output": "Good two"}, {"id": "N1", "output": "again"}]
    file.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n", encoding="utf-8")
    line = one_line_error(do_import(db, file, "summarize"), "mixed.jsonl:2: unknown news id 'N404'",
                          "mixed.jsonl:3: not a JSON object", "mixed.jsonl:5: duplicate", "nothing stored",
                          "--skip-invalid")
    assert "mixed.jsonl:1" not in line and stored(db) == []
    result = do_import(db, file, "summarize", "--skip-invalid")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert (payload["stored"], payload["skipped"], payload["skipped_lines"]) == (2, 3, [2, 3, 5])
    assert [r[0] for r in stored(db)] == ["N1", "N2"]


@pytest.mark.parametrize("args,needle", [
    (["--task", "poem"], "--task 'poem' is unknown"),
    (["--dataset", "nope"], "nope"),
    (["--llm", " "], "--llm must name the LLM"),
    (["--per-user", "0"], "--per-user 0 must be at least 1"),
])
def test_bad_flags_are_one_line_errors(db: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    file = tmp_path / "t.tsv"
    file.write_text("id\toutput\nN1\tTitle\n", encoding="utf-8")
    base = {"--dataset": "tiny", "--task": "summarize", "--llm": "gpt"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    flat = [x for kv in base.items() for x in kv]
    one_line_error(invoke(db, "import", str(file), *flat), needle)
    assert stored(db) == []


def test_unknown_file_type_and_missing_file(db: Path, tmp_path: Path) -> None:
    (tmp_path / "t.xlsx").write_text("x")
    one_line_error(do_import(db, tmp_path / "t.xlsx", "summarize"), "unknown file type '.xlsx'")
    one_line_error(do_import(db, tmp_path / "missing.tsv", "summarize"), "missing.tsv does not exist")


def test_list_shows_sources_with_counts_validity_and_cost(db: Path, tmp_path: Path) -> None:
    with open_store(db) as store:
        add_generation(store, "tiny", "summarize", "N1", {"title": "local"}, model="smol@1")
        add_generation(store, "tiny", "summarize", "N2", None, valid=False, model="smol@1")
    file = tmp_path / "t.tsv"
    file.write_text("id\toutput\tprompt_tokens\tcompletion_tokens\nN3\tTitle\t10\t2\n", encoding="utf-8")
    assert do_import(db, file, "summarize").exit_code == 0
    result = invoke(db, "list", "--dataset", "tiny", "--json")
    assert result.exit_code == 0, result.output
    sources = {s["source"]: s for s in json.loads(result.stdout.strip().splitlines()[-1])["sources"]}
    assert set(sources) == {"smol@1/compact", GPT.label}
    local, imported = sources["smol@1/compact"], sources[GPT.label]
    assert (local["inputs"], local["valid"], local["provenance"]) == (2, 1, "generated")
    assert (imported["inputs"], imported["valid"], imported["provenance"]) == (1, 1, "imported")
    assert (imported["prompt_tokens"], imported["completion_tokens"], imported["engine_seconds"]) == (10, 2, None)
    assert "gpt-3.5/imported" in result.stdout and "50%" in result.stdout
    one_line_error(invoke(db, "list", "--dataset", "nope"), "nope")


# -- the import's generation_runs row: cost known only as far as the file gave it (migration 009) --


def import_runs(db: Path) -> list[tuple]:
    with open_store(db, read_only=True) as store:
        return store.conn.execute(
            "SELECT task, model, prompt_set, backend, provenance, requests, new, valid, invalid, attempts, "
            "prompt_tokens, completion_tokens, engine_seconds, startup_seconds, wall_seconds, price_per_hour, cost "
            "FROM generation_runs ORDER BY started_at, run_id").fetchall()


def test_an_import_writes_one_run_row_with_the_files_token_totals(db: Path, tmp_path: Path) -> None:
    file = tmp_path / "t.tsv"
    file.write_text("id\toutput\tprompt_tokens\tcompletion_tokens\tlatency_s\nN1\tOne\t120\t9\t0.5\n"
                    "N2\tTwo\t80\t11\t0.25\nN404\tLost\t1\t1\t1\n", encoding="utf-8")
    result = do_import(db, file, "summarize", "--skip-invalid")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert (payload["prompt_tokens"], payload["completion_tokens"]) == (200, 20)
    assert "200 tokens in, 20 out" in result.stdout
    # rows read 3, stored 2, skipped 1; no local engine ran: attempts, start-up, wall and money unknown
    assert import_runs(db) == [("summarize", "gpt-3.5", "imported", "import", "imported", 3, 2, 2, 1, None,
                                200, 20, pytest.approx(0.75), None, None, None, None)]
    with open_store(db, read_only=True) as store:
        run_ids = {r[0] for r in store.conn.execute("SELECT run_id FROM generations").fetchall()}
        assert run_ids == {payload["run_id"]} and store.conn.execute(
            "SELECT run_id FROM generation_runs").fetchall() == [(payload["run_id"],)]


def test_a_token_total_some_rows_lack_is_unknown_not_a_partial_sum(db: Path, tmp_path: Path) -> None:
    file = tmp_path / "t.tsv"
    file.write_text("id\toutput\tprompt_tokens\tcompletion_tokens\nN1\tOne\t120\t9\nN2\tTwo\t\t\n", encoding="utf-8")
    result = do_import(db, file, "summarize")
    assert result.exit_code == 0, result.output
    assert "token cost unknown" in result.stdout
    assert import_runs(db)[0][10:13] == (None, None, None)
    listed = invoke(db, "list", "--dataset", "tiny", "--json")
    source = json.loads(listed.stdout.strip().splitlines()[-1])["sources"][0]
    assert (source["prompt_tokens"], source["completion_tokens"], source["cost"]) == (None, None, None)


def test_a_failed_import_writes_no_run_row(db: Path, tmp_path: Path) -> None:
    file = tmp_path / "t.tsv"
    file.write_text("id\toutput\nN1\tOne\nN404\tLost\n", encoding="utf-8")
    one_line_error(do_import(db, file, "summarize"), "N404")
    assert import_runs(db) == [] and stored(db) == []


def test_a_reimport_replaces_the_earlier_run_row_and_never_counts_tokens_twice(db: Path, tmp_path: Path) -> None:
    first, overlap = tmp_path / "a.tsv", tmp_path / "b.tsv"
    first.write_text("id\toutput\tprompt_tokens\tcompletion_tokens\nN1\tOne\t10\t1\nN2\tTwo\t20\t2\n", encoding="utf-8")
    overlap.write_text("id\toutput\tprompt_tokens\tcompletion_tokens\nN2\tTwo'\t40\t4\n", encoding="utf-8")
    assert do_import(db, first, "summarize").exit_code == 0
    assert do_import(db, first, "summarize").exit_code == 0  # the same file again: one run row, not two
    assert [r[5:8] + r[10:12] for r in import_runs(db)] == [(2, 2, 2, 30, 3)]
    assert do_import(db, overlap, "summarize").exit_code == 0  # N2 now belongs to the newer import
    assert [r[6:8] + r[10:12] for r in import_runs(db)] == [(1, 1, 10, 1), (1, 1, 40, 4)]
    listed = invoke(db, "list", "--dataset", "tiny", "--json")
    source = json.loads(listed.stdout.strip().splitlines()[-1])["sources"][0]
    assert (source["inputs"], source["prompt_tokens"], source["completion_tokens"]) == (2, 50, 5)


def test_list_shows_an_imported_sources_cost_as_unknown(db: Path, tmp_path: Path) -> None:
    from tests.support_report import add_generation_run

    with open_store(db) as store:
        add_generation(store, "tiny", "summarize", "N1", {"title": "local"}, model="smol@1")
        add_generation_run(store, "tiny", "summarize", model="smol@1", engine_seconds=36.0, startup_seconds=4.0)
    file = tmp_path / "t.tsv"
    file.write_text("id\toutput\nN3\tTitle\n", encoding="utf-8")
    assert do_import(db, file, "summarize").exit_code == 0
    result = invoke(db, "list", "--dataset", "tiny", "--json")
    assert result.exit_code == 0, result.output
    sources = {s["source"]: s for s in json.loads(result.stdout.strip().splitlines()[-1])["sources"]}
    imported, local = sources[GPT.label], sources["smol@1/compact"]
    assert {k: imported[k] for k in ("prompt_tokens", "completion_tokens", "engine_seconds", "cost")} == dict.fromkeys(
        ("prompt_tokens", "completion_tokens", "engine_seconds", "cost"))
    assert local["engine_seconds"] == pytest.approx(40.0) and local["cost"] is None
    line = next(text for text in result.stdout.splitlines() if GPT.label in text)
    assert line.count("unknown") == 4 and " 0 " not in line
    local_line = next(text for text in result.stdout.splitlines() if "smol@1/compact" in text)
    assert "unknown" not in local_line and "40.0" in local_line and "—" in local_line  # no price: no money


def test_report_shows_the_imported_sources_cost_and_ccr_as_unknown(db: Path, tmp_path: Path) -> None:
    """A priced local source keeps its money unit; the imported one has a gain, an unknown cost and an
    unknown cost conversion rate, in the terminal, the CSV, the JSON and the HTML report."""
    import csv

    from tests.support_report import add_generation_run, add_run, all_metrics

    file = tmp_path / "t.tsv"
    file.write_text("id\toutput\tprompt_tokens\tcompletion_tokens\nN1\tOne\t7\t3\n", encoding="utf-8")
    assert do_import(db, file, "summarize").exit_code == 0
    with open_store(db) as store:
        add_generation(store, "tiny", "summarize", "N1", {"title": "local"}, model="smol@1")
        add_generation_run(store, "tiny", "summarize", model="smol@1", wall_seconds=3600.0, price_per_hour=2.0)
        for seed, auc in ((1, 0.60), (2, 0.62)):
            add_run(store, "tiny", "nrms", "original", seed, all_metrics(auc))
            add_run(store, "tiny", "nrms", "ns", seed, all_metrics(auc + 0.04), source=("smol@1", "compact"))
            add_run(store, "tiny", "nrms", "ns", seed, all_metrics(auc + 0.02), source=(GPT.llm, GPT.prompt_set))
    out = tmp_path / "rep"
    result = runner.invoke(app, ["--db", str(db), "report", "--dataset", "tiny", "--out", str(out), "--json"],
                           env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    with (out / "cost.csv").open(newline="") as handle:
        cost = {r["generation_source"]: r for r in csv.DictReader(handle) if r["scheme"] == "NS"}
    local, imported = cost["smol@1/compact"], cost[GPT.label]
    assert local["cost_unit"] == imported["cost_unit"] == "price"  # the import does not demote the unit
    assert float(local["cost_units"]) == pytest.approx(2.0) and float(local["matching_ccr"]) == pytest.approx(0.02)
    assert (imported["provenance"], imported["prompt_tokens"], imported["completion_tokens"]) == ("imported", "7", "3")
    assert float(imported["matching_auc_improvement"]) == pytest.approx(0.02)
    for column in ("cost", "cost_units", "matching_ccr", "engine_seconds", "wall_seconds"):
        assert imported[column] == "", column
    table_8b = result.stdout[result.stdout.index("Table 8b"):]
    gpt_line = next(text for text in table_8b.splitlines() if GPT.label in text)
    assert "+0.0200" in gpt_line and "unknown" in gpt_line
    html_text = (out / "index.html").read_text(encoding="utf-8")
    section = html_text[html_text.index('id="generation-runs"'):]
    section = section[:section.index("</section>")]
    gpt_row = next(row for row in section.split("<tr") if "gpt-3.5" in row)
    assert "unknown" in gpt_row and "imported" in gpt_row and ">7<" in gpt_row


def test_an_old_store_migrates_its_imports_to_run_rows_with_unknown_costs(tmp_path: Path) -> None:
    """Before migration 009 an import wrote no generation_runs row and the cost columns were NOT NULL."""
    import duckdb

    from genre_local.store.connection import load_migrations
    from tests.support_report import add_generation_run

    path = tmp_path / "old.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
                 "applied_at TIMESTAMP NOT NULL)")
    for migration in (m for m in load_migrations() if m.version < 9):
        conn.execute(migration.sql)
        conn.execute("INSERT INTO schema_version VALUES (?, ?, now())", [migration.version, migration.name])
    for key, run_id, nid, tokens in (("a", "import-old1", "N1", (5, 1)), ("b", "import-old1", "N2", (6, 2)),
                                     ("c", "import-old2", "N3", (None, None)), ("d", "local1", "N4", (9, 9))):
        imported = run_id.startswith("import")
        conn.execute(
            "INSERT INTO generations BY NAME SELECT ? AS fingerprint, 'tiny' AS dataset, 'summarize' AS task, "
            "? AS input_id, ? AS model, 'v' AS prompt_version, 1 AS round, 1 AS attempt, ? AS run_id, ? AS backend, "
            "'{}' AS sampling, '[]' AS prompt, 'x' AS raw_output, '{\"title\": \"x\"}' AS parsed, true AS valid, "
            "? AS prompt_tokens, ? AS completion_tokens, ? AS latency_s, now() AS created_at, ? AS prompt_set, "
            "? AS provenance",
            [key, nid, "gpt-3.5" if imported else "llama", run_id, "import" if imported else "vllm", *tokens,
             None if imported else 0.5, "imported" if imported else "compact",
             "imported" if imported else "generated"])
    conn.execute("INSERT INTO generation_runs BY NAME SELECT 'local1' AS run_id, 'tiny' AS dataset, "
                 "'summarize' AS task, 'llama' AS model, 'vllm' AS backend, 1 AS round, now() AS started_at, "
                 "10 AS requests, 10 AS new, 0 AS skipped, 10 AS valid, 0 AS invalid, 10 AS attempts, "
                 "1000 AS prompt_tokens, 200 AS completion_tokens, 36.0 AS engine_seconds, 0.0 AS startup_seconds, "
                 "40.0 AS wall_seconds, NULL AS price_per_hour, NULL AS cost, 'compact' AS prompt_set")
    conn.close()
    with open_store(path) as store:
        assert store.schema_version() >= 9
        add_generation_run(store, "tiny", "summarize", run_id="local2")  # a later local run still stores
        rows = store.conn.execute(
            "SELECT run_id, provenance, requests, valid, attempts, prompt_tokens, completion_tokens, engine_seconds, "
            "wall_seconds, cost FROM generation_runs ORDER BY run_id").fetchall()
    assert rows == [("import-old1", "imported", 2, 2, None, 11, 3, None, None, None),
                    ("import-old2", "imported", 1, 1, None, None, None, None, None, None),
                    ("local1", "generated", 10, 10, 10, 1000, 200, 36.0, 40.0, None),
                    ("local2", "generated", 10, 10, 10, 1000, 200, 36.0, 40.0, None)]


def test_an_imported_sources_latencies_never_become_engine_hours_in_the_ccr() -> None:
    from genre_local.report.runs import index_runs
    from genre_local.report.views.cost import cost_table
    from genre_local.store.results import GenerationRunRow

    def run(model: str, provenance: str, engine: float | None, wall: float | None) -> GenerationRunRow:
        return GenerationRunRow(f"{model}-run", "summarize", model, "vllm", 1, 5, 5, 5, 0, 10, 10, engine,
                                None if wall is None else 0.0, wall, None, None, None, "compact", provenance)

    rows = cost_table([run("local", "generated", 3600.0, 3600.0), run("gpt", "imported", 7200.0, None)],
                      index_runs([]), "title", 2)
    by_source = {r.source: r for r in rows if r.scheme == "NS"}
    local, imported = by_source["local/compact"], by_source["gpt/compact"]
    assert local.unit == imported.unit == "engine-hour" and local.cost_units == pytest.approx(1.0)
    assert imported.engine_seconds == pytest.approx(7200.0) and imported.wall_seconds is None
    assert imported.cost_units is None and not imported.has_cost and imported.ccr(0.05) is None
    assert local.ccr(0.05) == pytest.approx(0.05)
