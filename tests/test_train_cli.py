"""`genre-local train` / `predict`: stored runs, --json, the paired t-test, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.store import open_store
from tests.support_train import add_all_generations, make_store, one_thread, small_train_toml

runner = CliRunner()

SMALL = small_train_toml()


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cli")
    db = make_store(folder / "s.duckdb", users=20, news_per_cat=8)
    add_all_generations(db, users=20)
    config = folder / "genre.toml"
    config.write_text(SMALL)
    return db, config


def invoke(env: tuple[Path, Path], *args: str):
    db, config = env
    return runner.invoke(app, ["--db", str(db), "--config", str(config), *args])


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0]


def test_train_stores_runs_and_prints_json(env) -> None:
    result = invoke(env, "train", "--model", "din", "--dataset", "tiny", "--seeds", "2", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["model"] == "din" and payload["variant"] == "original" and payload["seeds"] == 2
    assert set(payload["metrics"]) == {"auc", "mrr", "ndcg@5", "ndcg@10"}
    assert set(payload["groups"]) == {"new", "warm"} and set(payload["groups"]["new"]) == set(payload["metrics"])
    assert payload["p_value"] is None  # nothing to compare the original with
    with open_store(env[0]) as store:
        runs = store.conn.execute(
            "SELECT seed, variant, features, ng_k, eval_split, epochs_run, len(epoch_seconds), "
            "len(train_samples_per_s), eval_impressions_per_s, config FROM runs WHERE model = 'din' ORDER BY seed"
        ).fetchall()
        # bf16 "auto" on a CPU: DIN trains in float32 on any CPU, and the run says so
        assert store.conn.execute("SELECT DISTINCT autocast FROM runs WHERE model = 'din'").fetchall() == [("float32",)]
        assert [r[0] for r in runs] == [1, 2]
        for seed, variant, features, ng_k, split, epochs, n_sec, n_rate, eval_rate, config in runs:
            assert (variant, features, ng_k, split) == ("original", "title,category", 0, "test")
            assert n_sec == n_rate == epochs >= 1 and eval_rate > 0
            assert json.loads(config)["embed_dim"] == 16
            stored = json.loads(config)
            assert (stored["optimizer"], stored["decay_scope"], stored["interest_fusion"]) == ("adam", "weights", "gated")
        epochs = store.conn.execute(
            "SELECT e.epoch, e.seconds = r.epoch_seconds[e.epoch], e.data_wait_seconds < e.seconds "
            "FROM run_epochs e JOIN runs r USING (run_id) WHERE r.seed = 1 AND r.model = 'din' ORDER BY e.epoch"
        ).fetchall()
        assert epochs == [(e, True, True) for e in range(1, runs[0][5] + 1)]
        groups = store.conn.execute(
            "SELECT DISTINCT split, user_group FROM run_metrics ORDER BY ALL").fetchall()
        # original is one of Table 7's columns: also scored on source m/compact's Chain cohort
        assert groups == [(s, g) for s in ("dev", "test") for g in ("all", "chain-cohort:m/compact", "new", "warm")]
        mean_auc = store.conn.execute(
            "SELECT avg(value) FROM run_results WHERE model = 'din' AND user_group = 'all' AND metric = 'auc'"
        ).fetchall()[0][0]
    assert mean_auc == pytest.approx(payload["metrics"]["auc"], abs=1e-6)


def test_variant_run_gets_a_paired_p_value_against_original(env) -> None:
    result = invoke(env, "train", "--model", "din", "--dataset", "tiny", "--variant", "ns+up+ng",
                    "--ng-k", "1", "--seeds", "2", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["variant"] == "ns+up+ng"
    assert isinstance(payload["p_value"], float) and 0.0 <= payload["p_value"] <= 1.0
    assert "paired t-test" in result.stdout
    with open_store(env[0]) as store:
        row = store.conn.execute(
            "SELECT ng_k, variant_stats FROM runs WHERE variant = 'ns+up+ng' LIMIT 1").fetchall()[0]
    assert row[0] == 1 and json.loads(row[1])["synthetic_news"] > 0
    assert payload["source"] == "m/compact"  # the only generation source stored
    with open_store(env[0]) as store:
        sources = store.conn.execute(
            "SELECT r.variant, s.llm, s.prompt_set FROM runs r LEFT JOIN run_sources s USING (run_id) "
            "ORDER BY r.variant, r.seed").fetchall()
    assert ("ns+up+ng", "m", "compact") in sources
    assert all(llm is None for variant, llm, _ in sources if variant == "original")  # original reads no LLM


def test_the_report_of_runs_trained_the_same_way_has_no_settings_note(env, tmp_path: Path) -> None:
    """No noise: the original and ns+up+ng runs trained above with one config (their stored
    configs differ in variant, seeds and nothing that counts) get no settings note."""
    result = invoke(env, "report", "--dataset", "tiny", "--out", str(tmp_path / "rep"), "--no-plots", "--json")
    assert result.exit_code == 0, result.output
    views = json.loads(result.stdout.strip().splitlines()[-1])["datasets"]["tiny"]["views"]
    assert views["variants"]["rows"] > 0 and views["variants"]["settings_differ"] == []
    assert "not like for like" not in result.stdout


def test_unknown_dataset_is_one_line_exit_2(env) -> None:
    one_line_error(invoke(env, "train", "--model", "nrms", "--dataset", "nope"), "dataset 'nope'")


def test_missing_generations_name_the_generate_command(tmp_path: Path, env) -> None:
    db = make_store(tmp_path / "bare.duckdb", users=6, news_per_cat=3)
    result = runner.invoke(app, ["--db", str(db), "--config", str(env[1]), "train", "--model", "nrms",
                                 "--dataset", "tiny", "--variant", "chain"])
    one_line_error(result, "genre-local generate --dataset tiny --task chain")


@pytest.mark.parametrize("args,needle", [
    (["--variant", "ns+foo"], "unknown part 'foo'"),
    (["--features", "title,smell"], "unknown feature 'smell'"),
    (["--epochs", "0"], "--epochs"),
    (["--features", "title,image"], "--image-file"),
    (["--resume", "--checkpoint-dir", "/nonexistent-dir"], "no checkpoint"),
    (["--resume", "--retrain"], "--resume continues a checkpoint and --retrain"),
    (["--seeds", "1000000000000"], "--seeds must be between 1 and 1000, got 1000000000000"),
    (["--first-seed", "-3"], "--first-seed must be between 0 and"),
    (["--lr", "nan"], "--lr must be a finite number above 0"),
    (["--lr", "-0.5"], "--lr must be a finite number above 0"),
    (["--batch-size", "0"], "--batch-size must be between 1 and"),
    (["--max-steps", "-1"], "--max-steps must be between 0 and"),
    (["--ng-k", "-1"], "--ng-k must be between 0 and"),
    (["--variant", "ng+chain"], "--variant ng+chain: use either ng"),
    (["--image-file", "/nonexistent.npy", "--features", "title,image"], "--image-file /nonexistent.npy does not exist"),
])
def test_bad_flags_are_one_line_exit_2(env, args: list[str], needle: str) -> None:
    one_line_error(invoke(env, "train", "--model", "din", "--dataset", "tiny", *args), needle)


def test_first_seed_picks_which_seeds_train(env) -> None:
    result = invoke(env, "train", "--model", "dcn", "--dataset", "tiny", "--seeds", "2", "--first-seed", "4", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert [r["seed"] for r in payload["runs"]] == [4, 5]
    with open_store(env[0]) as store:
        seeds = store.conn.execute("SELECT seed FROM runs WHERE model = 'dcn' ORDER BY seed").fetchall()
    assert seeds == [(4,), (5,)]


def test_unknown_optimizer_decay_scope_or_fusion_is_rejected(tmp_path: Path, env) -> None:
    for flag, value in (("--optimizer", "sgd"), ("--decay-scope", "rows"), ("--interest-fusion", "mlp")):
        result = invoke(env, "train", "--model", "din", "--dataset", "tiny", flag, value)
        assert result.exit_code == 2 and flag in result.output
    config = tmp_path / "bad.toml"
    first_choice = {"optimizer": "adam", "decay_scope": "weights", "interest_fusion": "gated"}
    for line, needle in (('optimizer = "sgd"', "optimizer"), ('decay_scope = "rows"', "decay_scope"),
                         ('interest_fusion = "mlp"', "interest_fusion")):
        config.write_text(SMALL + line + "\n")
        result = runner.invoke(app, ["--db", str(env[0]), "--config", str(config), "train", "--model", "din",
                                     "--dataset", "tiny"])
        one_line_error(result, needle, first_choice[needle])


def test_unknown_model_is_rejected_by_the_cli(env) -> None:
    result = invoke(env, "train", "--model", "bert4rec", "--dataset", "tiny")
    assert result.exit_code == 2


def test_predict_writes_a_leaderboard_file(tmp_path: Path, env) -> None:
    db = make_store(tmp_path / "unlabeled.duckdb", users=8, news_per_cat=6, test_labeled=False)
    base = ["--db", str(db), "--config", str(env[1])]
    out = tmp_path / "prediction.txt"
    missing = runner.invoke(app, [*base, "predict", "--model", "nrms", "--dataset", "tiny", "--out", str(out)])
    one_line_error(missing, "genre-local train --model nrms")
    trained = runner.invoke(app, [*base, "train", "--model", "nrms", "--dataset", "tiny", "--epochs", "1"])
    assert trained.exit_code == 0, trained.output
    assert "dev" in trained.stdout  # no test labels: dev is reported
    result = runner.invoke(app, [*base, "predict", "--model", "nrms", "--dataset", "tiny", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with open_store(db) as store:
        expected = dict(store.conn.execute(
            "SELECT impression_id, len(candidates) FROM impressions WHERE split = 'test'").fetchall())
    lines = out.read_text().splitlines()
    assert len(lines) == len(expected)
    for line in lines:
        impression, ranks = line.split(" ")
        values = json.loads(ranks)
        assert sorted(values) == list(range(1, expected[int(impression)] + 1))


def test_resume_continues_a_stored_checkpoint_to_more_epochs(tmp_path: Path, env) -> None:
    checkpoints = tmp_path / "ck"
    args = ["train", "--model", "nrms", "--dataset", "tiny", "--checkpoint-dir", str(checkpoints), "--json"]
    first = invoke(env, *args, "--epochs", "1")
    assert first.exit_code == 0, first.output
    with open_store(env[0]) as store:
        store_id = store.conn.execute("SELECT store_id FROM store_identity").fetchone()[0]
    # kept under the store's id, named by model, variant, features, a settings hash and the seed
    assert len(list(checkpoints.glob(f"{store_id}/nrms-tiny-original-k0-title_category-*-seed1/latest/*"))) >= 3
    more = invoke(env, *args, "--epochs", "2", "--resume")
    assert more.exit_code == 0, more.output
    with open_store(env[0]) as store:
        rows = store.conn.execute(
            "SELECT epochs_run, epoch_seconds FROM runs WHERE model = 'nrms' AND variant = 'original' ORDER BY created_at"
        ).fetchall()
    (one_epoch, one_times), (two_epochs, two_times) = rows[-2:]
    assert (one_epoch, two_epochs) == (1, 2)
    # the first epoch came from the checkpoint (its measured time is carried over), not retrained
    assert two_times[0] == one_times[0]


def test_a_store_write_failure_keeps_the_training_for_resume(tmp_path: Path, env, monkeypatch) -> None:
    from genre_local.errors import StoreError

    db = make_store(tmp_path / "s.duckdb", users=8, news_per_cat=4)
    base = ["--db", str(db), "--config", str(env[1]), "train", "--model", "din", "--dataset", "tiny",
            "--epochs", "1", "--json"]

    def locked(db_path, wait_s: float = 0.0):
        raise StoreError(f"store {db} is locked by another genre-local process")

    with monkeypatch.context() as patch:
        patch.setattr("genre_local.store.runs.open_store_waiting", locked)
        failed = runner.invoke(app, base)
    assert failed.exit_code == 2
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is locked" in errors[0] and "--resume stores the runs" in errors[0]
    stored = runner.invoke(app, [*base, "--resume"])
    assert stored.exit_code == 0, stored.output
    with open_store(db) as store:
        assert store.conn.execute("SELECT count(*) FROM runs").fetchall()[0][0] == 1


def test_bad_image_file_contents_are_one_line_exit_2(tmp_path: Path, env) -> None:
    import numpy as np

    np.save(tmp_path / "img.npy", np.array([["a"] * 512]))
    (tmp_path / "img.txt").write_text("N1\n")
    result = invoke(env, "train", "--model", "din", "--dataset", "tiny", "--features", "title,image",
                    "--image-file", str(tmp_path / "img.npy"), "--checkpoint-dir", str(tmp_path / "ck"))
    one_line_error(result, "img.npy", "not numbers")
    with open_store(env[0]) as store:
        assert store.conn.execute("SELECT count(*) FROM runs WHERE features LIKE '%image%'").fetchall()[0][0] == 0


def test_a_nan_loss_is_one_line_exit_2_and_stores_nothing(tmp_path: Path, env, monkeypatch) -> None:
    from recsys.train import TrainStep

    db = make_store(tmp_path / "s.duckdb", users=8, news_per_cat=4)
    monkeypatch.setattr(TrainStep, "forward", lambda self, batch: torch_nan())
    result = runner.invoke(app, ["--db", str(db), "--config", str(env[1]), "train", "--model", "din",
                                 "--dataset", "tiny", "--epochs", "1"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "loss became nan" in errors[0] and "lower lr" in errors[0]
    with open_store(db) as store:
        assert store.conn.execute("SELECT count(*) FROM runs").fetchall()[0][0] == 0


def torch_nan():
    import torch

    return torch.tensor(float("nan"), requires_grad=True)


def test_train_says_which_runs_trained_under_bf16_autocast(tmp_path: Path) -> None:
    """[train] bf16 = "on": the run is stored as a bfloat16 one, and train's table and JSON say so."""
    db = make_store(tmp_path / "s.duckdb", users=8, news_per_cat=4)
    config = tmp_path / "genre.toml"
    config.write_text(small_train_toml(bf16="on", epochs=1))
    result = runner.invoke(app, ["--db", str(db), "--config", str(config), "train", "--model", "nrms",
                                 "--dataset", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.stdout.strip().splitlines()[-1])["runs"]
    assert run["autocast"] == "bfloat16" and "bfloat16 autocast" in result.stdout
    assert f"seed 1: run {run['run_id']} (trained now, under bfloat16 autocast)" in result.stdout
    with open_store(db) as store:
        assert store.conn.execute("SELECT autocast FROM runs").fetchall() == [("bfloat16",)]


def test_plmnr_trains_with_the_states_history_through_the_command(tmp_path: Path) -> None:
    """[train] plmnr_history = "states": train says it, stores it in the run's config, and
    report reads the run."""
    db = make_store(tmp_path / "s.duckdb", users=8, news_per_cat=4)
    config = tmp_path / "genre.toml"
    config.write_text(small_train_toml(plmnr_history="states", epochs=1, bf16="off"))
    base = ["--db", str(db), "--config", str(config)]
    result = runner.invoke(app, [*base, "train", "--model", "plmnr", "--dataset", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    assert "history news states" in result.stderr.replace("\n", " ")
    (run,) = json.loads(result.stdout.strip().splitlines()[-1])["runs"]
    with open_store(db) as store:
        (stored,) = store.conn.execute("SELECT config FROM runs").fetchall()
    assert json.loads(stored[0])["plmnr_history"] == "states" and run["trained"]
    report = runner.invoke(app, [*base, "report", "--dataset", "tiny", "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    assert run["run_id"] in (tmp_path / "report" / "epoch_curves.csv").read_text()


def test_a_stored_run_is_not_trained_or_stored_again(tmp_path: Path, env) -> None:
    """The same command again (with or without --resume, other threads) stores no second copy of
    the run; a seed not stored yet is trained; --retrain trains the stored one again."""
    db = make_store(tmp_path / "s.duckdb", users=8, news_per_cat=4)
    base = ["--db", str(db), "--config", str(env[1]), "train", "--model", "din", "--dataset", "tiny",
            "--epochs", "1", "--json"]
    first = runner.invoke(app, base)
    assert first.exit_code == 0, first.output
    (run_id,) = json.loads(first.stdout.strip().splitlines()[-1])["stored_runs"]
    for again in (runner.invoke(app, [*base, "--resume"]), runner.invoke(app, base)):
        assert again.exit_code == 0, again.output
        assert (f"is finished and already stored (seed 1 as run {run_id}); nothing trained or stored "
                "(--retrain trains it again)") in again.stderr
        payload = json.loads(again.stdout.strip().splitlines()[-1])
        assert payload["stored_runs"] == [] and payload["already_stored"] == [run_id]
    with open_store(db) as store:
        assert store.conn.execute("SELECT list(run_id) FROM runs").fetchall()[0][0] == [run_id]
    # Regression: with seed 1 stored and seed 2 not, the table and its JSON covered seed 2 only.
    # They cover both seeds asked for, the kept run marked, with the numbers `report` counts.
    both = runner.invoke(app, [*base, "--seeds", "2"])
    assert both.exit_code == 0, both.output
    payload = json.loads(both.stdout.strip().splitlines()[-1])
    (seed2,) = payload["stored_runs"]
    assert (payload["seeds"], payload["trained_seeds"], payload["already_stored"]) == (2, 1, [run_id])
    assert payload["runs"] == [{"seed": 1, "run_id": run_id, "trained": False, "superseded_by": None, "autocast": "float32"},
                               {"seed": 2, "run_id": seed2, "trained": True, "superseded_by": None, "autocast": "float32"}]
    assert f"seed 1: run {run_id} (stored before, not trained again)" in both.stdout
    assert f"seed 2: run {seed2} (trained now)" in both.stdout
    from genre_local.report.runs import index_runs
    from genre_local.store.results import load_metric_rows

    with open_store(db) as store:
        index = index_runs(load_metric_rows(store, "tiny"))
        for table in ("run_metrics", "run_epochs", "run_checkpoints", "run_sources", "runs"):
            store.conn.execute(f"DELETE FROM {table} WHERE run_id = ?", [seed2])  # the rest is about seed 1
    (key,) = index.runs
    reported = index.summary(key, "auc")
    assert set(reported.values) == {1, 2}
    assert payload["metrics"]["auc"] == pytest.approx(reported.mean, abs=1e-6)
    retrained = runner.invoke(app, [*base, "--retrain"])
    assert retrained.exit_code == 0, retrained.output
    (newer,) = json.loads(retrained.stdout.strip().splitlines()[-1])["stored_runs"]
    with open_store(db) as store:
        assert store.conn.execute("SELECT list(run_id ORDER BY created_at) FROM runs").fetchall()[0][0] == [run_id, newer]
    # more epochs is not finished: it trains on and stores a new run
    more = runner.invoke(app, [*base[:-3], "--epochs", "2", "--json", "--resume"])
    assert more.exit_code == 0, more.output
    with open_store(db) as store:
        assert store.conn.execute("SELECT list(epochs_run ORDER BY created_at) FROM runs").fetchall()[0][0] == [1, 1, 2]


def test_predict_uses_only_its_own_stores_checkpoints(tmp_path: Path, env) -> None:
    import shutil

    stores = {name: make_store(tmp_path / f"{name}.duckdb", users=8, news_per_cat=4) for name in ("a", "b")}

    def cli(store: str, *args: str, config: Path = env[1]):
        return runner.invoke(app, ["--db", str(stores[store]), "--config", str(config), *args])

    train = ["train", "--model", "nrms", "--dataset", "tiny", "--epochs", "1"]
    predict = ["predict", "--model", "nrms", "--dataset", "tiny", "--out", str(tmp_path / "p.txt")]
    assert cli("a", *train).exit_code == 0
    # the same rows in another store of the same folder: no run there, so no weights either
    one_line_error(cli("b", *predict), "no stored run of nrms on tiny/original", "genre-local train --model nrms")
    assert not (tmp_path / "p.txt").exists()
    done = cli("a", *predict)
    assert done.exit_code == 0, done.output
    with open_store(stores["a"]) as store:
        run_a, folder_a = store.conn.execute("SELECT run_id, checkpoint FROM runs JOIN run_checkpoints USING (run_id)").fetchone()
    assert f"with the weights of run {run_a}" in done.stdout
    assert cli("a", *predict, "--run", run_a).exit_code == 0
    one_line_error(cli("a", *predict, "--run", "nope"), "--run nope: no such run")
    one_line_error(cli("a", "predict", "--model", "din", "--dataset", "tiny", "--out", str(tmp_path / "p.txt"),
                       "--run", run_a), f"--run {run_a} is a nrms run")
    # other settings than the run's: refused, not scored with mismatched weights
    other = tmp_path / "other.toml"
    other.write_text(SMALL.replace("embed_dim = 16", "embed_dim = 32"))
    one_line_error(cli("a", *predict, config=other), f"run {run_a}", "other settings")
    # another store's weights in this store's checkpoint folder: refused
    assert cli("b", *train).exit_code == 0
    with open_store(stores["b"]) as store:
        folder_b = store.conn.execute("SELECT checkpoint FROM run_checkpoints").fetchone()[0]
    assert Path(folder_a).parent != Path(folder_b).parent  # each store has its own checkpoint folder
    shutil.rmtree(folder_b)
    shutil.copytree(folder_a, folder_b)
    one_line_error(cli("b", *predict), "belongs to other data")


def test_the_seed_table_shows_no_spread_for_one_seed():
    from genre_local.commands.train import _fmt

    assert _fmt((0.61234, None)) == "0.6123"  # one seed: no sample std, none claimed
    assert _fmt((0.61234, 0.0)) == "0.6123±0.0000"  # several seeds that agree
    assert _fmt((0.61234, 0.01234)) == "0.6123±0.0123"
    assert _fmt((float("nan"), None)) == "n/a"


def test_train_says_which_seeds_no_original_of_the_same_settings_pairs(capsys) -> None:
    """The seed table's note on seeds left out of the t-test (original runs of other settings
    only: genre_local.training.seed_table) is printed under the p-value line."""
    from types import SimpleNamespace

    from genre_local.commands.train import _print_seeds
    from genre_local.training import SeedResult, SeedTable, TrainOutcome

    note = "no stored original run trained with these settings for seeds 1-2 (those stored differ in lr): not paired"
    seeds = [SeedResult(s, f"r{s}", True, {"all": {"auc": 0.6}}) for s in (1, 2)]
    outcome = TrainOutcome(None, ["r1", "r2"], SeedTable(seeds, "dev", "dev", None, 0, note))
    _print_seeds(SimpleNamespace(model="nrms", spec=SimpleNamespace(name="ns")), "d", None, outcome)
    assert f"paired t-test vs original: {note}" in capsys.readouterr().out.replace("\n", " ")
