"""Training curves in trackers: `train --track`, recsys/tracking.py, the TensorBoard event files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.store import open_store
from recsys import tracking
from recsys.catalog import METRICS
from recsys.config import TrainConfig
from recsys.errors import ConfigError
from tests.support_train import make_store, one_thread, small_train_toml

runner = CliRunner()

SMALL = small_train_toml()


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("track")
    db = make_store(folder / "s.duckdb", users=20, news_per_cat=8)
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
        assert needle in lines[0], lines[0]


def read_scalars(run_folder: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] from every TensorBoard event file under `run_folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(run_folder.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    return scalars


def test_tensorboard_gets_the_loss_per_step_and_dev_metrics_per_epoch(env) -> None:
    db, _ = env
    with one_thread():
        result = invoke(env, "train", "--model", "nrms", "--dataset", "tiny", "--track", "tensorboard")
    assert result.exit_code == 0, result.output
    runs = [p for p in (db.parent / ".genre-cache" / "tracking").iterdir() if p.is_dir()]
    assert len(runs) == 1 and runs[0].name.startswith("nrms-tiny-original-") and "-seed1-" in runs[0].name
    scalars = read_scalars(runs[0])
    with open_store(db) as store:
        dev_auc = [r[0] for r in store.conn.execute(
            "SELECT e.stop_auc FROM run_epochs e JOIN runs r USING (run_id) WHERE r.model = 'nrms' ORDER BY epoch"
        ).fetchall()]
        rates = [r[0] for r in store.conn.execute(
            "SELECT e.samples_per_s FROM run_epochs e JOIN runs r USING (run_id) WHERE r.model = 'nrms' ORDER BY epoch"
        ).fetchall()]
    assert len(dev_auc) == 2
    # Per epoch: the same dev AUC and throughput the store holds, at epochs 1 and 2.
    assert [s for s, _ in scalars["dev/auc"]] == [1, 2]
    assert [v for _, v in scalars["dev/auc"]] == pytest.approx(dev_auc, abs=1e-6)
    assert [v for _, v in scalars["epoch/samples_per_s"]] == pytest.approx(rates, rel=1e-5)
    assert {f"dev/{m}" for m in METRICS} <= set(scalars)
    # Per step: one loss per training step of both epochs, numbered 1..N without gaps.
    steps = [s for s, _ in scalars["train/loss"]]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 2 and len(steps) % 2 == 0
    assert all(v == v and v > 0 for _, v in scalars["train/loss"])


def test_track_none_writes_no_tracker_files(tmp_path: Path, env) -> None:
    db = make_store(tmp_path / "n.duckdb", users=20, news_per_cat=8)
    with one_thread():
        result = runner.invoke(app, ["--db", str(db), "--config", str(env[1]), "train", "--model", "din",
                                     "--dataset", "tiny", "--epochs", "1", "--track", "none"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / ".genre-cache" / "tracking").exists()


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_a_missing_tracker_package_is_one_line_exit_2_naming_it(tmp_path: Path, env, name: str, monkeypatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == name else real_find_spec(n, *a))
    db = make_store(tmp_path / "m.duckdb", users=20, news_per_cat=8)
    result = runner.invoke(app, ["--db", str(db), "--config", str(env[1]), "train", "--model", "din",
                                 "--dataset", "tiny", "--track", name])
    one_line_error(result, f"--track {name} needs the '{name}' package", f"pip install {name}")
    with open_store(db) as store:
        assert store.conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    assert not (tmp_path / ".genre-cache" / "tracking").exists()


def test_an_unknown_tracker_is_rejected(env) -> None:
    result = invoke(env, "train", "--model", "din", "--dataset", "tiny", "--track", "neptune")
    assert result.exit_code == 2
    assert "neptune" in result.output


def test_a_bad_track_in_the_config_file_names_the_key(tmp_path: Path, env) -> None:
    config = tmp_path / "genre.toml"
    config.write_text(SMALL + 'track = "comet"\n')
    result = runner.invoke(app, ["--db", str(env[0]), "--config", str(config), "train", "--model", "din",
                                 "--dataset", "tiny"])
    one_line_error(result, "track", "comet", "tensorboard")


def test_train_config_checks_the_tracker() -> None:
    assert TrainConfig().track == tracking.DEFAULT_TRACKER == "tensorboard"
    assert TrainConfig(track="none").track == "none"
    with pytest.raises(ConfigError, match="track"):
        TrainConfig(track="TensorBoard ")


def test_offline_modes_point_into_the_folder(tmp_path: Path) -> None:
    assert tracking.offline_environment("mlflow", tmp_path) == {"MLFLOW_TRACKING_URI": (tmp_path / "mlruns").as_uri()}
    assert tracking.offline_environment("mlflow", tmp_path)["MLFLOW_TRACKING_URI"].startswith("file:")
    assert tracking.offline_environment("wandb", tmp_path) == {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}
    assert tracking.offline_environment("tensorboard", tmp_path) == {}


def test_prepare_sets_the_offline_mode_only_when_installed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "wandb" else real_find_spec(n, *a))
    tracking.Tracking("wandb", tmp_path).prepare()
    import os

    assert os.environ["WANDB_MODE"] == "offline" and os.environ["WANDB_DIR"] == str(tmp_path.absolute())
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None)
    with pytest.raises(ConfigError, match="pip install wandb"):
        tracking.Tracking("wandb", tmp_path).prepare()
    assert "WANDB_MODE" not in os.environ
    assert tracking.Tracking("none", tmp_path).accelerator_options() == {}
    assert tracking.Tracking("tensorboard", tmp_path).accelerator_options()["log_with"] == "tensorboard"


def test_hyperparameters_are_flat_scalars() -> None:
    flat = tracking.hyperparameters({"lr": 0.1, "features": ("title",), "nested": {"a": 1, "b": None}, "ok": True})
    assert flat == {"lr": 0.1, "features": "('title',)", "nested.a": 1, "nested.b": None, "ok": True}
