"""The evaluation protocol (recsys/stopping.py): the split that stops training is never the
split reported; without a labelled test, a hash-picked slice of train stops it and dev is reported."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.store import open_store
from genre_local.store.variants import fetch_encoded
from recsys.config import TrainConfig
from recsys.errors import ConfigError, RecsysError
from recsys.models import ModelConfig
from recsys.stopping import HOLDOUT_SPLIT, holdout_mask, plan_splits, take_rows
from recsys.train import RunSettings, Trainer, evaluate, make_accelerator
from recsys.variants import parse_variant
from tests.support_train import make_store, one_thread, small_train_toml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


def _encoded(folder: Path, test_labeled: bool, name: str):
    db = make_store(folder / f"{name}.duckdb", users=24, news_per_cat=8, test_labeled=test_labeled)
    with open_store(db) as store:
        encoded, _ = fetch_encoded(store.conn, "tiny", parse_variant("original"), ("title", "category"),
                                   12, 8, None, folder / f"cache-{name}")
    return encoded


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    return _encoded(tmp_path_factory.mktemp("stop"), True, "labeled")


@pytest.fixture(scope="module")
def unlabeled(tmp_path_factory):
    return _encoded(tmp_path_factory.mktemp("stop"), False, "unlabeled")


def settings(**changes) -> RunSettings:
    base = RunSettings(
        model="nrms", seed=1, epochs=2, batch_size=32, eval_batch_size=64, lr=1e-2, weight_decay=0.01,
        negatives=4, patience=2, history_len=10,
        model_config=ModelConfig(embed_dim=16, num_heads=2, transformer_layers=1, history_len=10,
                                 title_len=12, features=("title", "category")),
    )
    return replace(base, **changes)


# -- the slice rule -------------------------------------------------------------------------------


def test_holdout_slice_is_a_fixed_function_of_the_impression_id() -> None:
    ids = np.arange(1, 200_001, dtype=np.int64)
    mask = holdout_mask(ids, 0.1)
    assert abs(mask.mean() - 0.1) < 0.003
    # membership of an id never depends on which other ids are there or their order
    shuffled = np.random.default_rng(0).permutation(ids)
    assert np.array_equal(holdout_mask(shuffled, 0.1), np.isin(shuffled, ids[mask]))
    assert np.array_equal(holdout_mask(ids[::3], 0.1), mask[::3])
    # a larger fraction holds out a superset; 0 holds out nothing
    assert not (mask & ~holdout_mask(ids, 0.2)).any()
    assert not holdout_mask(ids, 0.0).any()
    # pinned: a change of rule or constants changes which impressions train (and every result)
    assert ids[:400][mask[:400]].tolist()[:8] == PINNED_FIRST_HELD_OUT


PINNED_FIRST_HELD_OUT = [10, 13, 20, 31, 48, 56, 62, 65]


def test_holdout_slice_is_the_same_in_another_process() -> None:
    ids = np.arange(1, 5001, dtype=np.int64)
    here = np.flatnonzero(holdout_mask(ids, 0.1)).tolist()
    code = ("import json, numpy as np; from recsys.stopping import holdout_mask; "
            "print(json.dumps(np.flatnonzero(holdout_mask(np.arange(1, 5001, dtype=np.int64), 0.1)).tolist()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"})
    assert json.loads(out.stdout) == here


def test_take_rows_keeps_each_impression_whole(labeled) -> None:
    train = labeled.split("train")
    rows = np.array([0, 3, 4, len(train) - 1])
    part = take_rows(train, rows)
    assert part.impression_id.tolist() == train.impression_id[rows].tolist()
    for new, old in enumerate(rows):
        assert np.array_equal(part.impression_candidates(new), train.impression_candidates(old))
        assert np.array_equal(part.impression_labels(new), train.impression_labels(old))
        assert np.array_equal(part.history[part.history_offsets[new]:part.history_offsets[new + 1]],
                              train.history[train.history_offsets[old]:train.history_offsets[old + 1]])
    assert part.user_index.tolist() == train.user_index[rows].tolist()
    assert part.original_history_len.tolist() == train.original_history_len[rows].tolist()
    whole = take_rows(train, np.arange(len(train)))
    for name in ("impression_id", "history", "history_offsets", "candidates", "candidate_offsets", "labels"):
        assert np.array_equal(getattr(whole, name), getattr(train, name)), name


# -- which split does what ------------------------------------------------------------------------


def test_labelled_test_is_reported_and_dev_stops_as_before(labeled) -> None:
    plan = plan_splits(labeled, 0.1)
    assert (plan.report_split, plan.stop_split) == ("test", "dev")
    assert plan.train is labeled.split("train") and plan.stopping is labeled.split("dev")
    without_dev = replace(labeled, splits={k: v for k, v in labeled.splits.items() if k != "dev"})
    plan = plan_splits(without_dev, 0.1)
    assert (plan.report_split, plan.stop_split, plan.stopping) == ("test", None, None)


def test_unlabelled_test_reports_dev_and_stops_on_a_train_slice(unlabeled) -> None:
    for data in (unlabeled, replace(unlabeled, splits={k: v for k, v in unlabeled.splits.items() if k != "test"})):
        plan = plan_splits(data, 0.1)
        assert (plan.report_split, plan.stop_split) == ("dev", HOLDOUT_SPLIT)
        train_ids = data.split("train").impression_id
        held = set(plan.stopping.impression_id.tolist())
        kept = set(plan.train.impression_id.tolist())
        assert held and kept and not held & kept and held | kept == set(train_ids.tolist())
        assert held == set(train_ids[holdout_mask(train_ids, 0.1)].tolist())
    plan = plan_splits(unlabeled, 0.0)
    assert (plan.report_split, plan.stop_split, plan.stopping) == ("dev", None, None)
    assert plan.train is unlabeled.split("train")


def test_report_split_dev_plans_a_labelled_test_like_mind(labeled, unlabeled) -> None:
    """report_split "dev" (a bounded run on synthetic data): dev reported, the train slice stops,
    test never scored; the same plan as a dataset without a labelled test."""
    plan = plan_splits(labeled, 0.1, "dev")
    assert (plan.report_split, plan.stop_split) == ("dev", HOLDOUT_SPLIT)
    train_ids = labeled.split("train").impression_id
    assert set(plan.stopping.impression_id.tolist()) == set(train_ids[holdout_mask(train_ids, 0.1)].tolist())
    plan = plan_splits(labeled, 0.0, "dev")
    assert (plan.report_split, plan.stop_split, plan.stopping) == ("dev", None, None)
    assert plan_splits(labeled, 0.1, "test").report_split == "test"
    with pytest.raises(RecsysError, match="no labeled test split to report"):
        plan_splits(unlabeled, 0.1, "test")
    with pytest.raises(ConfigError, match="report_split must be one of auto, dev, test"):
        TrainConfig(report_split="holdout")


def test_unusable_splits_are_refused(unlabeled) -> None:
    with pytest.raises(RecsysError, match="nothing to hold out.*holdout_fraction"):
        plan_splits(unlabeled, 1e-9)
    no_dev = replace(unlabeled, splits={k: v for k, v in unlabeled.splits.items() if k != "dev"})
    with pytest.raises(RecsysError, match="no labeled dev or test"):
        plan_splits(no_dev, 0.1)
    with pytest.raises(ConfigError, match="holdout_fraction must be between 0 and 0.5"):
        TrainConfig(holdout_fraction=0.7)
    with pytest.raises(ConfigError, match="holdout_fraction"):
        TrainConfig(holdout_fraction=float("nan"))


# -- the trainer follows the plan -----------------------------------------------------------------


def test_trainer_stops_on_the_holdout_and_reports_dev(unlabeled) -> None:
    accelerator = make_accelerator()
    trainer = Trainer(accelerator, unlabeled, settings(epochs=2))
    result = trainer.run()
    assert (result.eval_split, result.stop_split) == ("dev", HOLDOUT_SPLIT)
    assert set(result.metrics) == {"dev"} and len(result.dev_auc) == result.epochs_run == 2
    # training never saw the held-out impressions
    held = set(trainer.plan.stopping.impression_id.tolist())
    assert not held & set(trainer.samples.split.impression_id.tolist())
    # the per-epoch stopping AUC is the held-out slice's AUC of the kept (best) weights, not dev's
    model = accelerator.unwrap_model(trainer.step_module).model
    holdout, _ = evaluate(accelerator, model, unlabeled, HOLDOUT_SPLIT, trainer.settings, trainer.plan.stopping)
    assert holdout["all"]["auc"] == pytest.approx(result.dev_auc[result.best_epoch - 1], abs=1e-9)
    # the reported numbers are the whole dev split's, scored once with the same weights
    dev, _ = evaluate(accelerator, model, unlabeled, "dev", trainer.settings)
    assert result.metrics["dev"]["all"] == pytest.approx(dev["all"], abs=1e-9)
    # same settings, same slice, same numbers
    again = Trainer(accelerator, unlabeled, settings(epochs=2)).run()
    assert again.metrics == result.metrics and again.dev_auc == result.dev_auc


def test_trainer_with_labelled_test_stops_on_dev(labeled) -> None:
    accelerator = make_accelerator()
    trainer = Trainer(accelerator, labeled, settings(epochs=1))
    result = trainer.run()
    assert (result.eval_split, result.stop_split) == ("test", "dev")
    assert set(result.metrics) == {"dev", "test"}
    assert len(trainer.samples.split) == len(labeled.split("train"))  # nothing held out
    assert result.metrics["dev"]["all"]["auc"] == pytest.approx(result.dev_auc[0], abs=1e-9)


# -- the CLI and the store record both splits -----------------------------------------------------

SMALL = small_train_toml(epochs=1)


@pytest.mark.parametrize("test_labeled,expected", [(False, ("dev", HOLDOUT_SPLIT)), (True, ("test", "dev"))])
def test_train_command_names_both_splits(tmp_path: Path, test_labeled: bool, expected: tuple[str, str]) -> None:
    db = make_store(tmp_path / "s.duckdb", users=16, news_per_cat=6, test_labeled=test_labeled)
    config = tmp_path / "genre.toml"
    config.write_text(SMALL)
    result = CliRunner().invoke(app, ["--db", str(db), "--config", str(config), "train", "--model", "din",
                                      "--dataset", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert (payload["eval_split"], payload["stop_split"]) == expected
    assert f"reported on {expected[0]} (stopped on {expected[1]})" in " ".join(result.stdout.split())
    with open_store(db) as store:
        row = store.conn.execute("SELECT eval_split, stop_split, config FROM runs").fetchall()
    assert [(r[0], r[1]) for r in row] == [expected]
    assert json.loads(row[0][2])["holdout_fraction"] == 0.1


def test_holdout_fraction_comes_from_genre_toml_and_is_checked(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", users=16, news_per_cat=6, test_labeled=False)
    config = tmp_path / "genre.toml"
    config.write_text(SMALL + "holdout_fraction = 0\n")
    result = CliRunner().invoke(app, ["--db", str(db), "--config", str(config), "train", "--model", "din",
                                      "--dataset", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert (payload["eval_split"], payload["stop_split"]) == ("dev", None)
    assert "(no early stopping)" in " ".join(result.stdout.split())
    config.write_text(SMALL + "holdout_fraction = 0.9\n")
    result = CliRunner().invoke(app, ["--db", str(db), "--config", str(config), "train", "--model", "din",
                                      "--dataset", "tiny"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "genre.toml [train].holdout_fraction: must be between 0 and 0.5, got 0.9" in lines[0]


def test_migration_records_dev_as_the_stopping_split_of_earlier_runs(tmp_path: Path) -> None:
    """Before 005 a run stopped on dev exactly when it recorded a per-epoch dev AUC."""
    import duckdb

    from genre_local.store.connection import load_migrations

    path = tmp_path / "old.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
                 "applied_at TIMESTAMP NOT NULL)")
    for migration in (m for m in load_migrations() if m.version < 5):
        conn.execute(migration.sql)
        conn.execute("INSERT INTO schema_version VALUES (?, ?, now())", [migration.version, migration.name])
    for run_id, dev_auc in (("stopped", [0.6, 0.7]), ("unstopped", [])):
        conn.execute(
            "INSERT INTO runs (run_id, experiment_id, model, kind, dataset, variant, features, ng_k, seed, config, "
            "data_fingerprint, variant_stats, eval_split, epochs_run, best_epoch, stopped_early, epoch_seconds, "
            "train_samples_per_s, dev_auc, eval_impressions_per_s, processes, device, created_at) VALUES "
            "(?, 'e', 'din', 'ranking', 'd', 'original', 'title', 0, 1, '{}', 'f', '{}', 'test', 2, 2, false, "
            "[1.0, 1.0], [1.0, 1.0], ?, 1.0, 1, 'cpu', now())", [run_id, dev_auc])
    conn.execute("INSERT INTO run_epochs VALUES ('stopped', 1, 1.0, 1.0, 0.0, 0.6), ('stopped', 2, 1.0, 1.0, 0.0, 0.7)")
    conn.close()
    with open_store(path) as store:
        rows = dict(store.conn.execute("SELECT run_id, stop_split FROM runs").fetchall())
        assert store.schema_version() >= 5
        # Migration 013: the stopping split's AUC columns are named for what they hold, values kept.
        aucs = dict(store.conn.execute("SELECT run_id, stop_auc FROM runs").fetchall())
        epochs = store.conn.execute("SELECT epoch, stop_auc FROM run_epochs ORDER BY epoch").fetchall()
        columns = {c[0] for t in ("runs", "run_epochs") for c in store.conn.execute(f"DESCRIBE {t}").fetchall()}
    assert rows == {"stopped": "dev", "unstopped": None}
    assert aucs == {"stopped": [0.6, 0.7], "unstopped": []} and epochs == [(1, 0.6), (2, 0.7)]
    assert "dev_auc" not in columns


def test_paired_baseline_is_an_original_run_of_the_same_protocol(tmp_path: Path) -> None:
    """An original run reported on dev after stopping on dev (the old protocol) is no baseline
    for a run reported on dev after stopping on the train hold-out."""
    from genre_local.store.runs import RunIdentity, original_baseline

    db = make_store(tmp_path / "s.duckdb", users=4, news_per_cat=2)
    with open_store(db) as store:
        for run_id, seed, stop_split, auc in (("old", 1, "dev", 0.9), ("new", 2, HOLDOUT_SPLIT, 0.6)):
            store.conn.execute(
                "INSERT INTO runs (run_id, experiment_id, model, kind, dataset, variant, features, ng_k, seed, "
                "config, data_fingerprint, variant_stats, eval_split, epochs_run, best_epoch, stopped_early, "
                "epoch_seconds, train_samples_per_s, stop_auc, eval_impressions_per_s, processes, device, "
                "created_at, stop_split) VALUES (?, 'e', 'din', 'ranking', 'tiny', 'original', 'title', 0, ?, '{}', "
                "'f', '{}', 'dev', 1, 1, false, [1.0], [1.0], [0.5], 1.0, 1, 'cpu', now(), ?)", [run_id, seed, stop_split])
            store.conn.execute("INSERT INTO run_metrics VALUES (?, 'dev', 'all', 'auc', ?)", [run_id, auc])
        ident = RunIdentity("din", "ranking", "tiny", "up", "title", 0)
        assert original_baseline(store, ident, "dev", HOLDOUT_SPLIT, {}).auc_by_seed == {2: 0.6}
        assert original_baseline(store, ident, "dev", "dev", {}).auc_by_seed == {1: 0.9}
        assert original_baseline(store, ident, "dev", None, {}).auc_by_seed == {}
