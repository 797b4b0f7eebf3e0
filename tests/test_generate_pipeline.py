"""The generation pipeline with a fake engine: storage, views, resume, retries, rounds, cost."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genre_local.llm.tasks import TASKS
from genre_local.pipeline.plan import PlanSettings, Planner, fingerprint, sampling_key
from genre_local.store import open_store
from tests.support_generate import DATASET, NEWS, FakeBackend, build_store, run_fake

ALL = ("summarize", "profile", "news", "chain")


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return build_store(tmp_path / "g.duckdb")


def _rows(db: Path, sql: str, params=()):
    with open_store(db) as store:
        return store.conn.execute(sql, list(params)).fetchall()


def test_fingerprint_is_stable_and_sensitive():
    key = {"temperature": 0.0, "top_p": 1.0, "seed": 0, "max_tokens": 40, "constrained": True}
    base = fingerprint("d", "summarize", "N1", "m", "v1", key, 1)
    # Pinned: a change here silently invalidates every stored generation.
    assert base == fingerprint("d", "summarize", "N1", "m", "v1", dict(reversed(list(key.items()))), 1)
    assert base == "a6c2d37b3386d0f603fea32fbf529e3622ec30bb65e1ae2eaa63436876662166"
    variants = [
        fingerprint("d2", "summarize", "N1", "m", "v1", key, 1),
        fingerprint("d", "profile", "N1", "m", "v1", key, 1),
        fingerprint("d", "summarize", "N2", "m", "v1", key, 1),
        fingerprint("d", "summarize", "N1", "m2", "v1", key, 1),
        fingerprint("d", "summarize", "N1", "m", "v2", key, 1),
        fingerprint("d", "summarize", "N1", "m", "v1", {**key, "temperature": 0.5}, 1),
        fingerprint("d", "summarize", "N1", "m", "v1", key, 2),
    ]
    assert len(set(variants + [base])) == len(variants) + 1


def test_sampling_key_carries_task_parameters():
    s = PlanSettings(dataset="d", model_id="m", per_user=3, history_items=7)
    summarize = sampling_key(s, TASKS["summarize"])
    assert "per_user" not in summarize and "history_items" not in summarize
    assert sampling_key(s, TASKS["profile"])["history_items"] == 7 and "per_user" not in sampling_key(s, TASKS["profile"])
    assert sampling_key(s, TASKS["news"])["per_user"] == 3
    assert sampling_key(s, TASKS["chain"]) == {
        "temperature": 0.0, "top_p": 1.0, "seed": 0, "max_tokens": 16 + 274 * 3, "constrained": True,
        "repetition_penalty": 1.1, "history_items": 7, "per_user": 3,
    }


def test_plan_inputs_histories_and_cold_users(db: Path):
    with open_store(db) as store:
        planner = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="m"))
        histories = {u.user_id: u.history for u in planner.users}
        assert histories["U3"] == ("N4", "N6", "N5")  # from the train impression, not the stale dev one
        assert "U5" not in histories  # empty history: nothing to profile
        assert [u.user_id for u in planner.task_users(TASKS["news"])] == ["U1", "U2", "U3"]
        assert [u.user_id for u in planner.task_users(TASKS["profile"])] == ["U1", "U2", "U3", "U4"]
        news = planner.plan(store.conn, TASKS["news"], 1)
        assert "- (sports) Dolphins beat Jets in overtime" in news[0].request.messages[1]["content"]


def test_injection_title_stays_in_the_user_message(db: Path):
    with open_store(db) as store:
        items = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="m")).plan(store.conn, TASKS["summarize"], 1)
    systems = {item.request.messages[0]["content"] for item in items}
    assert len(systems) == 1  # one shared prefix for the prefix cache
    injected = next(i for i in items if i.input_id == "N5")
    assert "Ignore the instructions" in injected.request.messages[1]["content"]
    assert "Ignore the instructions" not in injected.request.messages[0]["content"]


def test_all_tasks_store_rows_views_and_runs(db: Path):
    stats, backend, run_id = run_fake(db, batch_size=3)
    by_task = {s.task: s for s in stats}
    assert by_task["summarize"].new == 7 and by_task["profile"].new == 4 and by_task["news"].new == 3
    assert by_task["chain"].new == 3  # profiles existed already from the profile task
    assert all(s.invalid == 0 for s in stats)
    counts = dict(_rows(db, "SELECT task, count(*) FROM generations GROUP BY task"))
    assert counts == {"summarize": 7, "profile": 4, "news": 3, "chain": 3}
    assert _rows(db, "SELECT count(*) FROM enhanced_titles")[0][0] == 7
    profiles = _rows(db, "SELECT user_id, topics, regions FROM user_profiles ORDER BY user_id")
    assert profiles[0] == ("U1", ["health", "weather", "finance"], ["Florida"])
    synthetic = _rows(db, "SELECT user_id, nid, position, source_task, subcategory FROM synthetic_news ORDER BY source_task, user_id, position")
    assert len(synthetic) == 12  # 3 cold users x 2 items x (news, chain)
    nids = [row[1] for row in synthetic]
    assert len(set(nids)) == 12 and all(n.startswith("G") for n in nids)
    assert not set(nids) & {r[0] for r in _rows(db, "SELECT nid FROM news")}
    assert {row[2] for row in synthetic} == {0, 1} and {row[4] for row in synthetic} == {"generated"}
    runs = _rows(db, "SELECT task, requests, new, valid, cost FROM generation_runs WHERE run_id = ? ORDER BY task", [run_id])
    assert [r[0] for r in runs] == ["chain", "news", "profile", "summarize"] and all(r[4] is None for r in runs)
    fidelity = _rows(db, "SELECT precision_at_3, recall, region_accuracy, users FROM profile_fidelity")
    # fake profile: health, weather, finance + Florida for everyone
    assert fidelity == [(pytest.approx((1 + 1 + 1 + 3) / 12), pytest.approx((1 / 3 + 1 / 2 + 1 / 2 + 1) / 4), 0.25, 4)]
    # Beside it, the chance level of 3 random topics and 1 random state for the same users.
    truth = _rows(db, "SELECT user_id, topics, region FROM user_truth")
    chance = _rows(db, "SELECT chance_precision_at_3, chance_recall, chance_region_accuracy FROM profile_fidelity")
    true_sizes = [len(t) for _, t, _ in truth]
    # A user without a true region is always wrong with one state named.
    region_chance = sum(1 / 50 if region else 0.0 for _, _, region in truth) / 4
    assert chance == [(pytest.approx(sum(n / 19 for n in true_sizes) / 4), pytest.approx(3 / 19), pytest.approx(region_chance))]
    assert by_task["profile"].fidelity.chance.recall == pytest.approx(3 / 19)
    stored = _rows(db, "SELECT prompt, parsed, valid, attempt, backend, model FROM generations WHERE task = 'chain' LIMIT 1")[0]
    assert json.loads(stored[0])[1]["role"] == "user" and "Interest topics: health, weather, finance" in json.loads(stored[0])[1]["content"]
    assert stored[2:] == (True, 1, "fake", "fake-model")


def test_rerun_skips_everything_without_starting_the_engine(db: Path):
    run_fake(db)
    started = []
    from genre_local.pipeline.plan import PlanSettings as PS
    from genre_local.pipeline.runner import GenerationRun, LazyEngine, RunSettings

    settings = RunSettings(plan=PS(dataset=DATASET, model_id="fake-model"), backend="fake")
    run = GenerationRun(db, settings, LazyEngine(lambda: started.append(1) or FakeBackend()))
    stats = run.run([TASKS[name] for name in ALL])
    assert not started
    assert all(s.new == 0 and s.skipped == s.requests > 0 for s in stats)
    assert _rows(db, "SELECT count(*), count(DISTINCT fingerprint) FROM generations")[0] == (17, 17)


def test_chain_alone_makes_missing_profiles_first(db: Path):
    stats, _, _ = run_fake(db, tasks=("chain",))
    assert stats[0].new == 6  # 3 profiles + 3 chains, charged to the chain row
    assert _rows(db, "SELECT count(*) FROM user_profiles")[0][0] == 3


def test_retry_rewrites_the_same_row(db: Path):
    backend = FakeBackend(bad_first=1)
    stats, _, _ = run_fake(db, tasks=("summarize",), backend=backend, batch_size=100)
    assert stats[0].valid == 7 and stats[0].attempts == 14
    rows = _rows(db, "SELECT attempt, valid, prompt_tokens FROM generations")
    assert {r for r in rows} == {(2, True, 200)}  # tokens of both attempts, one row per key
    retry = backend.calls[1][0]
    assert retry.temperature > 0  # retries sample instead of repeating greedily
    first = backend.calls[0][0]
    assert len(retry.messages) == len(first.messages) and retry.messages[0] == first.messages[0]
    assert retry.messages[-1]["content"].startswith(first.messages[-1]["content"])
    assert "rejected (no JSON object in the output)" in retry.messages[-1]["content"]
    assert "Sorry" not in json.dumps(retry.messages)  # the rejected answer is not shown again
    stored = json.loads(_rows(db, "SELECT prompt FROM generations LIMIT 1")[0][0])
    assert "rejected (" in stored[-1]["content"]  # the conversation of the attempt that was stored


def test_invalid_after_retries_is_stored_then_redone(db: Path):
    stats, _, _ = run_fake(db, tasks=("profile",), backend=FakeBackend(always_bad=True), retries=1)
    assert stats[0].invalid == 4 and stats[0].errors == {"no JSON object in the output": 4}
    assert _rows(db, "SELECT count(*), bool_or(valid), min(error) FROM generations")[0] == (4, False, "no JSON object in the output")
    assert _rows(db, "SELECT count(*) FROM user_profiles")[0][0] == 0
    stats, _, _ = run_fake(db, tasks=("profile",))
    assert stats[0].new == 4 and stats[0].valid == 4
    assert _rows(db, "SELECT count(*), bool_and(valid) FROM generations")[0] == (4, True)


def test_limit_takes_the_first_inputs(db: Path):
    stats, _, _ = run_fake(db, tasks=("summarize", "news"), limit=2)
    assert [s.requests for s in stats] == [2, 2]
    assert _rows(db, "SELECT input_id FROM generations ORDER BY input_id") == [("N1",), ("N2",), ("U1",), ("U2",)]


def test_round_two_reads_round_one_outputs(db: Path):
    backend = FakeBackend()
    stats, _, _ = run_fake(db, tasks=("summarize", "profile", "chain"), rounds=2, backend=backend)
    assert [(s.task, s.round) for s in stats] == [("summarize", 1), ("profile", 1), ("chain", 1), ("summarize", 2), ("profile", 2), ("chain", 2)]
    round1_title = _rows(db, "SELECT parsed ->> 'title' FROM generations WHERE task = 'summarize' AND round = 1 AND input_id = 'N1'")[0][0]
    round2_prompt = _rows(db, "SELECT prompt FROM generations WHERE task = 'summarize' AND round = 2 AND input_id = 'N1'")[0][0]
    assert round1_title in round2_prompt
    profile2 = _rows(db, "SELECT prompt FROM generations WHERE task = 'profile' AND round = 2 AND input_id = 'U1'")[0][0]
    assert round1_title in profile2 and "Fresh story" in profile2  # enhanced titles + last round's chain news
    assert _rows(db, "SELECT DISTINCT round FROM enhanced_titles") == [(2,)]


def test_kill_minus_9_then_rerun_loses_and_duplicates_nothing(db: Path):
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "tests.support_generate", str(db)]
    child = subprocess.Popen([*command, "--sleep", "0.15"], stdout=subprocess.PIPE, text=True, cwd=root)
    seen = 0
    deadline = time.monotonic() + 60
    while seen < 6 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        seen += line.startswith("engine call")
    child.kill()  # SIGKILL, mid-run
    child.wait()
    assert seen == 6, "the child never got going"
    before = _rows(db, "SELECT fingerprint, run_id FROM generations")
    assert 4 <= len(before) < 17
    done = subprocess.run(command, capture_output=True, text=True, cwd=root, timeout=120)
    assert done.returncode == 0, done.stderr
    after = _rows(db, "SELECT fingerprint, run_id, valid FROM generations")
    assert len(after) == len({r[0] for r in after}) == 17 and all(r[2] for r in after)
    assert set(before) <= {(f, r) for f, r, _ in after}  # stored rows were skipped, not redone


def test_profile_fidelity_edge_cases():
    from genre_local.pipeline.fidelity import profile_fidelity

    assert profile_fidelity({"U1": (["health"], [])}, {"U2": (["health"], "Ohio")}) is None
    result = profile_fidelity(
        {"U1": (["health"], []), "U2": (["food", "travel", "health", "finance"], ["Ohio", "Texas"])},
        {"U1": (["health", "food"], ""), "U2": (["finance"], "Texas")},
    )
    # U1: 1/3 precision, 1/2 recall, no region expected and none given; U2: 0/3 (finance is 4th), 1/1, Texas found
    assert result.users == 2
    assert result.precision_at_3 == pytest.approx((1 / 3 + 0) / 2)
    assert result.recall == pytest.approx((0.5 + 1.0) / 2)
    assert result.region_accuracy == 1.0


def test_real_templates_give_the_pinned_prompt_versions_and_fingerprints(db: Path):
    # Pinned: stores written before keep resuming only while these stay byte-identical (a prompt
    # text, a sampling value or the fingerprint recipe changing shows up here first).
    expected = {
        "summarize": ("N1", "36cf9160299f", "b46891522b8ff5aabfd09494014b2110b548136bddb5a8e713f83d12de6e179b"),
        "profile": ("U1", "e45d46cea535", "475a3cc89238c65b8256ae3633a1ce72bade46243ecdb0c73d87018e821c54b1"),
        "news": ("U1", "b5d8814e9260", "f66b271792d0dbf7f41c65c455adfef0db9c95e725aa4070b5b2315353a01969"),
        "chain": ("U1", "ee8f2b25febc", "f0ad54a781e86572e27707bdfc58eaf37822ad64a3f9e49c48e1d2bc1026ea3b"),
    }
    with open_store(db) as store:
        planner = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="m", per_user=2))
        for name, task in TASKS.items():
            items = planner.plan(store.conn, task, 1) or planner.preview(task)
            first = items[0]
            assert (first.input_id, first.prompt_version, first.fingerprint) == expected[name], name
            assert first.task is task and first.request.max_tokens == task.max_tokens(2)


def test_chain_plans_only_users_with_a_profile_and_names_the_missing(db: Path):
    chain = TASKS["chain"]
    with open_store(db) as store:
        planner = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="m"))
        assert planner.plan(store.conn, chain, 1) == []
        assert planner.users_missing_required(store.conn, chain, 1) == {"U1", "U2", "U3"}
        assert planner.users_missing_required(store.conn, TASKS["news"], 1) == set()  # requires nothing
    run_fake(db, tasks=("profile",), limit=2)  # written by model "fake-model"
    with open_store(db) as store:
        # Another LLM's chain never reads these profiles (issue 9: sources never mix).
        other = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="m"))
        assert other.plan(store.conn, chain, 1) == []
        assert other.users_missing_required(store.conn, chain, 1) == {"U1", "U2", "U3"}
        planner = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="fake-model"))
        assert [i.input_id for i in planner.plan(store.conn, chain, 1)] == ["U1", "U2"]
        assert planner.users_missing_required(store.conn, chain, 1) == {"U3"}
        assert "Interest topics: health, weather, finance" in planner.plan(store.conn, chain, 1)[0].request.messages[1]["content"]


def test_unconstrained_plans_send_no_schema_and_get_their_own_keys(db: Path):
    with open_store(db) as store:
        constrained = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="m")).plan(store.conn, TASKS["profile"], 1)
        free = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="m", constrained=False)).plan(store.conn, TASKS["profile"], 1)
    assert all(i.request.schema == TASKS["profile"].schema(2) for i in constrained)
    assert all(i.request.schema is None for i in free)
    assert [i.request.messages for i in free] == [i.request.messages for i in constrained]
    assert not {i.fingerprint for i in free} & {i.fingerprint for i in constrained}


def test_generation_cost_formula():
    from genre_local.pipeline.cost import generation_cost

    assert generation_cost(None, 100.0, 20.0) is None
    assert generation_cost(0.0, 100.0, 20.0) is None  # no price: no money figure, not 0
    assert generation_cost(3.0, 1000.0, 200.0) == pytest.approx(1.0)


def test_run_cost_is_stored_with_its_price(db: Path):
    from genre_local.pipeline.cost import generation_cost
    from genre_local.pipeline.runner import GenerationRun, LazyEngine, RunSettings

    settings = RunSettings(plan=PlanSettings(dataset=DATASET, model_id="m"), backend="fake", price_per_hour=36.0)
    run = GenerationRun(db, settings, LazyEngine(FakeBackend))
    (stats,) = run.run([TASKS["summarize"]])
    price, cost, wall, startup = _rows(db, "SELECT price_per_hour, cost, wall_seconds, startup_seconds FROM generation_runs")[0]
    assert price == 36.0 and wall == pytest.approx(stats.wall_seconds) and startup == pytest.approx(stats.startup_seconds)
    assert cost == pytest.approx(generation_cost(36.0, stats.wall_seconds, stats.startup_seconds)) and cost > 0


def test_meminfo_has_one_reader_shared_by_the_vllm_check_and_machine_info():
    from genre_local import machine
    from genre_local.llm import vllm_backend

    memory = machine.meminfo_gib()
    if memory is None:
        pytest.skip("no /proc/meminfo here")
    assert 0 < memory.available_gib <= memory.total_gib
    assert machine.machine_info(packages=())["mem_total_gib"] == round(memory.total_gib, 1)
    assert vllm_backend.meminfo_gib is machine.meminfo_gib


class _ReaderDuringFirstCall(FakeBackend):
    """On its first engine call another process opens the store read-only (a `report` or
    `generations list` running beside the generation) and holds it for `hold_s` seconds."""

    def __init__(self, db: Path, hold_s: float):
        super().__init__()
        self.db, self.hold_s, self.reader = db, hold_s, None

    def generate(self, requests):
        if self.reader is None:
            code = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); "
                    "print('open', flush=True); time.sleep(float(sys.argv[2]))")
            self.reader = subprocess.Popen([sys.executable, "-c", code, str(self.db), str(self.hold_s)],
                                           stdout=subprocess.PIPE, text=True)
            assert self.reader.stdout.readline().strip() == "open"
        return super().generate(requests)


def test_a_batch_waits_for_a_reader_holding_the_store_instead_of_failing(db: Path):
    backend = _ReaderDuringFirstCall(db, hold_s=0.5)
    stats, _, _ = run_fake(db, tasks=("summarize",), batch_size=100, backend=backend)
    assert backend.reader.wait(timeout=30) == 0  # the reader really held the store during the write
    assert stats[0].new == stats[0].valid == len(NEWS) > 0
    assert _rows(db, "SELECT count(*) FROM generations WHERE task = 'summarize' AND valid")[0][0] == len(NEWS)
    assert _rows(db, "SELECT count(*) FROM generation_runs WHERE task = 'summarize'")[0][0] == 1


class _CtrlCOnCall(FakeBackend):
    """Ctrl-C arrives during engine call `n`."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def generate(self, requests):
        if len(self.calls) + 1 == self.n:
            raise KeyboardInterrupt
        return super().generate(requests)


def test_an_interrupted_task_keeps_the_cost_of_what_it_stored(db: Path):
    # The rerun skips the stored outputs, so only the interrupted run's row can count their cost.
    with pytest.raises(KeyboardInterrupt):
        run_fake(db, tasks=("summarize",), batch_size=2, backend=_CtrlCOnCall(3))
    (row,) = _rows(db, "SELECT new, valid, prompt_tokens, requests FROM generation_runs WHERE task = 'summarize'")
    assert row == (4, 4, 400, len(NEWS))  # two batches of two, 100 prompt tokens each
    stats, _, _ = run_fake(db, tasks=("summarize",), batch_size=2)
    assert stats[0].new == len(NEWS) - 4
    assert _rows(db, "SELECT sum(new), sum(prompt_tokens) FROM generation_runs WHERE task = 'summarize'")[0] == (
        len(NEWS), 100 * len(NEWS))
    assert _rows(db, "SELECT count(*), count(DISTINCT fingerprint) FROM generations WHERE task = 'summarize'")[0] == (
        len(NEWS), len(NEWS))
