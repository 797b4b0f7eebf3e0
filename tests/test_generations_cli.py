"""`genre-local generations show` and the seeded samples behind it (and behind index.html)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.report.samples import collect_all_samples, collect_samples, matching_llms, pick
from genre_local.store import open_store
from tests.support_generate import DATASET, NEWS, FakeBackend, build_store, run_fake

runner = CliRunner()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = build_store(tmp_path_factory.mktemp("gen") / "g.duckdb")
    run_fake(path)
    run_fake(path, backend=FakeBackend(always_bad=True), model_id="bad-model@1234", tasks=("summarize",))
    return path


def show(db: Path, *args: str):
    return runner.invoke(app, ["--db", str(db), "generations", "show", "--dataset", DATASET, *args],
                         env={"COLUMNS": "200"})


def payload(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_pick_is_a_reproducible_sample_in_id_order() -> None:
    ids = [f"N{i}" for i in range(100)]
    first = pick(ids, 5, seed=0, salt="d:summarize:m")
    assert first == pick(list(reversed(ids)), 5, seed=0, salt="d:summarize:m")  # input order does not matter
    assert len(first) == 5 and first == sorted(first) and set(first) <= set(ids)
    assert pick(ids, 5, seed=1, salt="d:summarize:m") != first
    assert pick(ids, 5, seed=0, salt="d:profile:m") != first
    assert pick(["b", "a", "a"], 5, seed=0, salt="s") == ["a", "b"]  # fewer than the limit: all


def test_pick_stays_put_when_more_outputs_are_stored() -> None:
    ids = [f"N{i}" for i in range(100)]
    first = set(pick(ids, 5, seed=0, salt="d:summarize:m"))
    for extra in range(100, 140):
        grown = set(pick(ids + [f"N{extra}"], 5, seed=0, salt="d:summarize:m"))
        # one more stored output either leaves the sample alone or takes exactly one place in it
        assert grown == first or (len(grown - first) == 1 and grown - first == {f"N{extra}"})
    assert any(set(pick(ids + [f"N{e}"], 5, seed=0, salt="d:summarize:m")) != first for e in range(100, 400))


def test_matching_llms_by_id_or_folder_name() -> None:
    stored = ["SmolLM2@aa", "SmolLM2@bb", "other@cc"]
    assert matching_llms(stored, None) == sorted(stored)
    assert matching_llms(stored, "other@cc") == ["other@cc"]
    assert matching_llms(stored, "SmolLM2") == ["SmolLM2@aa", "SmolLM2@bb"]
    assert matching_llms(stored, "Smol") == []


def test_summarize_shows_original_beside_enhanced_title(db: Path) -> None:
    data = payload(show(db, "--task", "summarize", "--llm", "fake-model", "--limit", "3", "--json"))
    (llm,) = data["llms"]
    assert (llm["llm"], llm["valid_inputs"], llm["invalid_inputs"]) == ("fake-model", len(NEWS), 0)
    titles = {nid: title for nid, _, _, title, _ in NEWS}
    assert len(llm["samples"]) == 3
    for sample in llm["samples"]:
        assert sample["original_title"] == titles[sample["input_id"]]
        assert sample["enhanced_title"].startswith("Clear headline ")
    again = payload(show(db, "--task", "summarize", "--llm", "fake-model", "--limit", "3", "--json"))
    assert again == data  # seeded: the same sample every time
    other = payload(show(db, "--task", "summarize", "--llm", "fake-model", "--limit", "3", "--seed", "5", "--json"))
    assert [s["input_id"] for s in other["llms"][0]["samples"]] != [s["input_id"] for s in llm["samples"]]


def test_profile_shows_history_profile_truth_and_fidelity(db: Path) -> None:
    result = show(db, "--task", "profile", "--limit", "10", "--json")
    (llm,) = payload(result)["llms"]
    by_user = {s["input_id"]: s for s in llm["samples"]}
    assert set(by_user) == {"U1", "U2", "U3", "U4"}  # U5 has no history, so no profile
    u1 = by_user["U1"]
    assert u1["history"] == ["Dolphins beat Jets in overtime", "Hurricane warning issued for Florida Keys"]
    assert (u1["topics"], u1["regions"]) == (["health", "weather", "finance"], ["Florida"])
    truth = u1["truth"]
    assert truth["topics"] == ["weather", "disasters", "travel"] and truth["region"] == "Florida"
    # weather is the one true topic among the top three; 1 of 3 true topics named; Florida right
    assert truth["fidelity"]["precision_at_3"] == pytest.approx(1 / 3)
    assert truth["fidelity"]["recall"] == pytest.approx(1 / 3) and truth["fidelity"]["region_accuracy"] == 1.0
    assert "P@3 0.33, recall 0.33, region yes" in result.stdout


def test_news_and_chain_show_cold_users_history_beside_their_synthetic_news(db: Path) -> None:
    news = payload(show(db, "--task", "news", "--json"))["llms"][0]
    assert {s["input_id"] for s in news["samples"]} == {"U1", "U2", "U3"}  # the cold users
    assert all(len(s["items"]) == 2 and s["items"][0]["title"].startswith("Fresh story") for s in news["samples"])
    result = show(db, "--task", "chain", "--json")
    chain = payload(result)["llms"][0]
    assert all(s["topics"] == ["health", "weather", "finance"] for s in chain["samples"])  # the profile read
    assert "[news] Fresh story" in result.stdout  # categories print as text, not as Rich markup


def test_invalid_outputs_show_with_their_errors(db: Path) -> None:
    result = show(db, "--task", "summarize", "--llm", "bad-model", "--limit", "2", "--json")
    (llm,) = payload(result)["llms"]
    assert (llm["valid_inputs"], llm["invalid_inputs"], llm["samples"]) == (0, len(NEWS), [])
    assert len(llm["invalid"]) == 2
    assert all(i["error"] and i["raw_output"] == "Sorry, I cannot help with that." and i["attempt"] == 3
               for i in llm["invalid"])
    assert "no valid output stored" in result.stdout and "no JSON object" in result.stdout


def test_without_llm_every_llm_of_the_task_is_shown(db: Path) -> None:
    data = payload(show(db, "--task", "summarize", "--json"))
    assert [x["llm"] for x in data["llms"]] == ["bad-model@1234", "fake-model"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--task", "rewrite"], "--task 'rewrite' is unknown"),
    (["--task", "news", "--limit", "0"], "--limit 0 must be at least 1"),
    (["--task", "news", "--llm", "nope"], "--llm 'nope' generated no 'news' outputs"),
])
def test_user_mistakes_are_one_line_exit_2(db: Path, args: list[str], needle: str) -> None:
    result = show(db, *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]


def test_unknown_dataset_missing_store_and_no_generations_are_one_line_exit_2(db: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["--db", str(db), "generations", "show", "--dataset", "x", "--task", "news"])
    assert result.exit_code == 2 and "dataset 'x'" in result.stderr
    missing = tmp_path / "none.duckdb"
    result = runner.invoke(app, ["--db", str(missing), "generations", "show", "--dataset", "x", "--task", "news"])
    assert result.exit_code == 2 and "does not exist" in result.stderr and not missing.exists()
    bare = build_store(tmp_path / "bare.duckdb")
    result = runner.invoke(app, ["--db", str(bare), "generations", "show", "--dataset", DATASET, "--task", "profile"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"genre-local generate --dataset {DATASET} --task profile" in result.stderr


def test_the_report_samples_every_task_and_llm_in_task_order(db: Path) -> None:
    with open_store(db, read_only=True) as store:
        sets = collect_all_samples(store, DATASET, limit=2, seed=0)
        single = collect_samples(store, DATASET, "summarize", "fake-model", limit=2, seed=0, prompt_set="compact",
                                 method="generate")
    assert [(s.task, s.llm) for s in sets] == [("summarize", "bad-model@1234"), ("summarize", "fake-model"),
                                               ("profile", "fake-model"), ("news", "fake-model"),
                                               ("chain", "fake-model")]
    assert sets[1] == single and len(single.samples) == 2


def test_list_never_cuts_the_source_on_a_narrow_terminal(tmp_path: Path) -> None:
    """The source column is what `--llm` takes: on an 80-column terminal or a pipe, rich squeezed
    the table and cut it to "llama:SmolLM2-135M-Instruct.Q4_1…" (seen in the demo's store)."""
    from genre_local.store.results import load_source_summaries

    db = build_store(tmp_path / "s.duckdb")
    run_fake(db, tasks=("summarize", "profile"))
    with open_store(db, read_only=True) as store:
        labels = {s.label for s in load_source_summaries(store)}
    result = runner.invoke(app, ["--db", str(db), "generations", "list"], env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "summarize" in line or "profile" in line]
    assert len(rows) == 2 and all(any(f" {label} " in row for label in labels) for row in rows), result.stdout
    assert "…" not in result.stdout
    # its seconds include the engine's start-up: not the "engine s" of report's Table 8a
    assert "engine+start s" in result.stdout and " engine s " not in result.stdout
