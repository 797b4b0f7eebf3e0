"""Issue 9 §4: the `paper` prompt set beside `compact` (resolution, templates, planning, storage)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.config import GENERATE_PROMPT_SETS
from genre_local.errors import UserError
from genre_local.llm import parsing
from genre_local.llm.prompt_sets import COMPACT, PAPER, PROMPT_SETS, default_prompt_set, prompt_set_named, resolve_prompt_set
from genre_local.llm.tasks import PAPER_TASKS, TASKS, TaskInput
from genre_local.pipeline.distributed import item_to_row, row_to_item
from genre_local.pipeline.plan import PlanSettings, Planner, fit_history
from genre_local.store import open_store
from genre_local.store.datasets import NewsRow
from genre_local.store.generations import GenerationSource, Profile, chain_items, profiles_up_to, sources_with_tasks
from tests.support_generate import DATASET, HISTORIES, build_store, run_fake

runner = CliRunner()
COLD = [u for u, h in HISTORIES.items() if 1 <= len(h) <= 5]  # U1, U2, U3


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return build_store(tmp_path / "g.duckdb")


def _rows(db: Path, sql: str, params=()):
    with open_store(db, read_only=True) as store:
        return store.conn.execute(sql, list(params)).fetchall()


# -- resolution -------------------------------------------------------------------------------------


def test_prompt_sets_resolve_by_name_and_default_per_model():
    assert tuple(PROMPT_SETS) == GENERATE_PROMPT_SETS  # config validates against the same names
    assert prompt_set_named("paper") is PAPER and prompt_set_named("compact") is COMPACT
    assert default_prompt_set("llama") is COMPACT  # the embedded 135M model
    assert default_prompt_set("/models/llama-3-8b") is PAPER and default_prompt_set("qwen7b") is PAPER
    assert resolve_prompt_set(None, "llama") is COMPACT and resolve_prompt_set("paper", "llama") is PAPER
    with pytest.raises(UserError) as caught:
        prompt_set_named("fancy")
    assert str(caught.value) == "--prompts 'fancy' is not a prompt set; use one of compact, paper"
    for prompt_set in PROMPT_SETS.values():
        assert prompt_set.folder.is_dir()
        assert all(task.prompt_set == prompt_set.name for task in prompt_set.tasks.values())
        assert list(prompt_set.tasks) == list(TASKS)  # GENRE's order in every set
    assert PAPER.task("chain").requires is PAPER.task("profile")
    assert COMPACT.tasks is TASKS and PAPER.tasks is PAPER_TASKS


def test_unknown_prompt_set_is_one_line_and_exit_2(db: Path, tmp_path: Path):
    result = runner.invoke(app, ["--db", str(db), "generate", "--dataset", DATASET, "--prompts", "fancy", "--dry-run"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--prompts" in lines[0] and "fancy" in lines[0] and "compact" in lines[0], lines
    config = tmp_path / "genre.toml"
    config.write_text('[generate]\nprompts = "fancy"\n')
    result = runner.invoke(app, ["--db", str(db), "--config", str(config), "generate", "--dataset", DATASET, "--dry-run"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "prompts" in lines[0] and "fancy" in lines[0], lines


def test_dry_run_names_the_set_and_counts_one_request_per_news(db: Path, tmp_path: Path):
    config = tmp_path / "genre.toml"
    config.write_text('[generate]\nprompts = "paper"\nper_user = 3\n')
    result = runner.invoke(app, ["--db", str(db), "--config", str(config), "generate", "--dataset", DATASET,
                                 "--task", "news", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["prompt_set"] == "paper" and payload["requests"] == {"news": 3 * len(COLD)}
    assert "prompt set paper, prompt version paper:" in result.stdout
    # The flag wins over the config key.
    result = runner.invoke(app, ["--db", str(db), "--config", str(config), "generate", "--dataset", DATASET,
                                 "--task", "news", "--dry-run", "--json", "--prompts", "compact"])
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["prompt_set"] == "compact" and payload["requests"] == {"news": len(COLD)}


# -- templates ----------------------------------------------------------------------------------------


def test_compact_versions_are_unchanged_and_paper_versions_name_their_set():
    # Pinned (also in test_generate_pipeline): the move to prompts/compact/ kept every byte.
    assert [t.template().version for t in TASKS.values()] == ["36cf9160299f", "e45d46cea535", "b5d8814e9260", "ee8f2b25febc"]
    paper = [t.template().version for t in PAPER_TASKS.values()]
    assert all(v.startswith("paper:") for v in paper) and len(set(paper)) == 4
    assert not set(paper) & {t.template().version for t in TASKS.values()}


def _render(task, task_input: TaskInput, per_user: int = 2) -> tuple[str, str]:
    messages = task.template().render(task.slots(task_input, task.items_per_request(per_user)))
    assert [m["role"] for m in messages] == ["system", "user"]
    for m in messages:
        assert "$" not in m["content"]  # every ${slot} filled
    return messages[0]["content"], messages[1]["content"]


def test_every_paper_template_renders_with_its_slots_filled():
    news = NewsRow("N1", "Dolphins win", "Miami won 27-24.", "sports", "football")
    system, user = _render(PAPER.task("summarize"), TaskInput("N1", news=news))
    assert "clear, complete, objective and neutral" in system and "fifteen" not in system
    assert user.splitlines() == ["[title] Dolphins win", "[abstract] Miami won 27-24.", "[category] sports",
                                 "[subcategory] football"]
    history = (("sports", "Dolphins win"), ("weather", "Storm hits Keys"), ("finance", "Fed holds"))
    system, user = _render(PAPER.task("profile"), TaskInput("U1", history=history))
    assert "international news" in system and "at most" not in system
    assert user.splitlines()[1:] == ["(1) Dolphins win", "(2) Storm hits Keys", "(3) Fed holds"]
    system, user = _render(PAPER.task("news"), TaskInput("U1", history=history), per_user=2)
    assert "one piece of news" in system and "foodanddrink" in system
    assert "(weather) Storm hits Keys" in user
    profile = Profile(["weather", "finance"], ["Florida"])
    system, user = _render(PAPER.task("chain"), TaskInput("U1", history=history, profile=profile))
    assert "Interest topics: weather, finance" in user
    assert "Florida" not in user and "region" not in (system + user).lower()  # topics only, as in the paper
    _, compact_user = _render(COMPACT.task("chain"), TaskInput("U1", history=history, profile=profile))
    assert "Regions followed: Florida" in compact_user


def test_paper_caps_follow_the_schema_not_the_compact_limits():
    long_title = "A clear, complete and neutral headline " + "that names every key fact " * 4
    assert 120 < len(long_title.strip()) < 200
    text = json.dumps({"title": long_title})
    assert not COMPACT.task("summarize").parse(text, 2).valid
    assert PAPER.task("summarize").parse(text, 2).value == {"title": long_title.strip()}
    assert PAPER.task("summarize").schema(2)["properties"]["title"]["maxLength"] == 200
    seven = ["health", "travel", "food", "finance", "weather", "history", "culture"]
    profile = json.dumps({"topics": seven, "regions": ["Ohio", "Texas", "Utah", "Iowa"]})
    assert COMPACT.task("profile").parse(profile, 2).value == {"topics": seven[:5], "regions": ["Ohio", "Texas", "Utah"]}
    assert PAPER.task("profile").parse(profile, 2).value == {"topics": seven, "regions": ["Ohio", "Texas", "Utah", "Iowa"]}
    schema = PAPER.task("profile").schema(2)["properties"]
    assert schema["topics"]["maxItems"] == 19 and schema["regions"]["maxItems"] == 50
    assert parsing.PROFILE_MAX_TOPICS == 5  # the compact set's caps stay as they were
    # One news per request: the schema and parser ask for one item, whatever per_user is.
    news = PAPER.task("news")
    assert news.requests_per_input(3) == 3 and news.items_per_request(3) == 1
    assert news.schema(news.items_per_request(3))["properties"]["items"]["maxItems"] == 1
    assert COMPACT.task("news").requests_per_input(3) == 1 and COMPACT.task("news").items_per_request(3) == 3


# -- planning -----------------------------------------------------------------------------------------


def test_paper_news_plans_k_requests_per_cold_user_each_with_its_own_seed(db: Path):
    with open_store(db) as store:
        paper = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="m", per_user=3, prompt_set="paper"))
        items = paper.plan(store.conn, PAPER.task("news"), 1)
        compact = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="m", per_user=3))
        compact_items = compact.plan(store.conn, COMPACT.task("news"), 1)
    assert [i.input_id for i in items] == [u for u in COLD for _ in range(3)]
    assert len({i.fingerprint for i in items}) == len(items)
    first = [i for i in items if i.input_id == "U1"]
    keys = [json.loads(i.sampling) for i in first]
    assert [k["news_index"] for k in keys] == [0, 1, 2] and [i.request.seed for i in first] == [0, 1, 2]
    # Greedy decoding would write one news three times: one-per-request samples at 1.0 (API default).
    assert {i.request.temperature for i in first} == {1.0} and all(k["temperature"] == 1.0 for k in keys)
    assert all(i.per_request == 1 and i.request.schema["properties"]["items"]["maxItems"] == 1 for i in first)
    assert all(i.request.messages == first[0].request.messages for i in first)  # one prompt; seed and index differ
    assert [i.input_id for i in compact_items] == COLD and all(i.per_request == 3 for i in compact_items)
    assert compact_items[0].request.temperature == 0.0 and "news_index" not in json.loads(compact_items[0].sampling)
    # Same input, two sets: never the same key.
    assert not {i.fingerprint for i in items} & {i.fingerprint for i in compact_items}


def test_paper_profile_sees_the_whole_history_and_drops_the_oldest_only_to_fit(db: Path):
    with open_store(db) as store:
        paper = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="m", history_items=2, prompt_set="paper"))
        compact = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="m", history_items=2))
        warm_paper = [i for i in paper.plan(store.conn, PAPER.task("profile"), 1) if i.input_id == "U4"][0]
        warm_compact = [i for i in compact.plan(store.conn, COMPACT.task("profile"), 1) if i.input_id == "U4"][0]
        tight = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="m", prompt_set="paper", context_tokens=650))
        budget = tight.history_char_budget(PAPER.task("profile"))
        cut = [i for i in tight.plan(store.conn, PAPER.task("profile"), 1) if i.input_id == "U4"][0]
    assert len(warm_paper.history_titles) == len(HISTORIES["U4"]) == 7
    assert len(warm_compact.history_titles) == 2
    assert json.loads(warm_paper.sampling)["history_items"] == "all" and json.loads(warm_paper.sampling)["context_tokens"] == 2048
    assert budget == 0  # 650 tokens hold the answer (388) and the template (600) only partly
    assert cut.history_titles == () and cut.fingerprint != warm_paper.fingerprint
    lines = [("news", "a" * 40), ("news", "b" * 40), ("news", "c" * 40)]
    assert fit_history(lines, 10_000) == tuple(lines)
    assert fit_history(lines, 2 * (4 + 40 + 8)) == tuple(lines[1:])  # the oldest goes first
    assert fit_history(lines, 10) == ()


def test_a_planner_refuses_a_task_of_another_set(db: Path):
    with open_store(db) as store:
        planner = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="m"))
        with pytest.raises(ValueError, match="prompt set 'paper'"):
            planner.plan(store.conn, PAPER.task("summarize"), 1)


def test_planned_rows_keep_their_set_through_workers_and_ray(db: Path):
    with open_store(db) as store:
        planner = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="m", prompt_set="paper", per_user=2))
        item = planner.plan(store.conn, PAPER.task("news"), 1)[1]
    back = row_to_item(item_to_row(item))
    assert back == item and back.task is PAPER.task("news") and back.per_request == 1


# -- storage: runs, resume, sources -------------------------------------------------------------------


def test_paper_run_stores_one_news_per_request_and_resumes_exactly_once(db: Path):
    stats, backend, run_id = run_fake(db, prompt_set="paper", per_user=2, batch_size=4)
    rows = _rows(db, "SELECT task, count(*), count(DISTINCT prompt_set), min(prompt_set), min(prompt_version) "
                     "FROM generations GROUP BY task ORDER BY task")
    counts = {task: (n, sets, name, version) for task, n, sets, name, version in rows}
    assert counts["news"][0] == 2 * len(COLD) and counts["chain"][0] == 2 * len(COLD)
    assert all(sets == 1 and name == "paper" and version.startswith("paper:") for _, sets, name, version in counts.values())
    news = _rows(db, "SELECT user_id, position, count(DISTINCT nid) OVER (PARTITION BY user_id) FROM synthetic_news "
                     "WHERE source_task = 'news' ORDER BY user_id, position")
    assert [(u, p) for u, p, _ in news] == [(u, p) for u in COLD for p in range(2)]
    assert {n for *_, n in news} == {2}
    assert _rows(db, "SELECT DISTINCT prompt_set FROM generation_runs") == [("paper",)]
    # Chain feedback reads both requests' news, of this set only.
    with open_store(db, read_only=True) as store:
        assert len(chain_items(store.conn, DATASET, 1, "fake-model", "paper")["U1"]) == 2
        assert chain_items(store.conn, DATASET, 1, "fake-model", "compact") == {}
        assert profiles_up_to(store.conn, DATASET, 1, "fake-model", prompt_set="compact") == {}
    calls = len(backend.calls)
    again, backend2, _ = run_fake(db, prompt_set="paper", per_user=2, batch_size=4)
    assert backend2.calls == [] and sum(s.new for s in again) == 0 and calls > 0
    # The other set plans new work and the store then holds two sources of one LLM.
    other, backend3, _ = run_fake(db, per_user=2, batch_size=4)
    assert sum(s.new for s in other) > 0 and backend3.calls
    with open_store(db, read_only=True) as store:
        assert sources_with_tasks(store.conn, DATASET, ["summarize"]) == [
            GenerationSource("fake-model", "compact"), GenerationSource("fake-model", "paper")]
    assert _rows(db, "SELECT count(*) FROM synthetic_news WHERE prompt_set = 'compact' AND source_task = 'news'") == [(2 * len(COLD),)]


def test_round_two_of_the_paper_set_reads_its_own_round_one(db: Path):
    run_fake(db, tasks=("summarize",), rounds=1)  # compact titles exist but must not be read
    run_fake(db, tasks=("summarize", "profile"), rounds=2, prompt_set="paper")
    prompts = _rows(db, "SELECT prompt FROM generations WHERE prompt_set = 'paper' AND task = 'profile' AND round = 2 "
                        "AND input_id = 'U1'")
    paper_titles = {t for (t,) in _rows(db, "SELECT parsed ->> 'title' FROM generations WHERE prompt_set = 'paper' "
                                            "AND task = 'summarize' AND round = 1 AND input_id IN ('N1', 'N2')")}
    text = json.loads(prompts[0][0])[1]["content"]
    assert all(t in text for t in paper_titles) and len(paper_titles) == 2


def test_samples_group_by_llm_and_prompt_set(db: Path):
    from genre_local.report.samples import collect_all_samples, matching_sources
    from genre_local.store.generations import GenerationSource

    run_fake(db, tasks=("news",), per_user=2)
    run_fake(db, tasks=("news",), per_user=2, prompt_set="paper")
    base = ["--db", str(db), "generations", "show", "--dataset", DATASET, "--task", "news", "--json"]
    result = runner.invoke(app, base)
    assert result.exit_code == 0, result.output
    sets = json.loads(result.stdout.strip().splitlines()[-1])["llms"]
    assert [s["source"] for s in sets] == ["fake-model/compact", "fake-model/paper"]
    assert "source fake-model/paper" in result.stdout
    # A paper user's two requests are one sample with both news, in request order.
    paper = sets[1]
    assert paper["valid_inputs"] == len(COLD) and all(len(s["items"]) == 2 for s in paper["samples"])
    result = runner.invoke(app, [*base, "--llm", "fake-model/paper"])
    assert [s["source"] for s in json.loads(result.stdout.strip().splitlines()[-1])["llms"]] == ["fake-model/paper"]
    result = runner.invoke(app, [*base, "--llm", "nobody/paper"])
    assert result.exit_code == 2 and "fake-model/compact, fake-model/paper" in result.stderr
    with open_store(db, read_only=True) as store:
        assert [(s.task, s.source) for s in collect_all_samples(store, DATASET, 2)] == [
            ("news", "fake-model/compact"), ("news", "fake-model/paper")]
    both = [GenerationSource("m@1", "compact"), GenerationSource("m@1", "paper")]
    assert matching_sources(both, "m") == both


@pytest.mark.slow  # one training run
def test_two_prompt_sets_of_one_llm_are_two_sources_to_train(tmp_path: Path):
    from tests.support_train import add_generation, make_store, one_thread, small_train_toml

    db = make_store(tmp_path / "t.duckdb", users=8, news_per_cat=3)
    with open_store(db) as store:
        nids = [r[0] for r in store.conn.execute("SELECT nid FROM news ORDER BY nid").fetchall()]
        for nid in nids:
            for prompt_set in ("compact", "paper"):
                add_generation(store, "tiny", "summarize", nid, {"title": f"{prompt_set} says {nid}"},
                               model="smollm2@1", prompt_set=prompt_set)
    config = tmp_path / "genre.toml"
    config.write_text(small_train_toml(epochs=1))
    base = ["--db", str(db), "--config", str(config), "train", "--model", "nrms", "--dataset", "tiny", "--variant", "ns"]
    result = runner.invoke(app, base)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "smollm2@1/compact, smollm2@1/paper" in lines[0], lines
    with one_thread():
        result = runner.invoke(app, [*base, "--llm", "smollm2@1/paper", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["source"] == "smollm2@1/paper"
    assert _rows(db, "SELECT llm, prompt_set FROM run_sources") == [("smollm2@1", "paper")]
