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
