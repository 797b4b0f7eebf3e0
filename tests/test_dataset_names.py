"""A dataset name is checked wherever it becomes a path or is looked up; `report` and `models list`
never create a store; `report` changes nothing in one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.store import open_store
from recsys.data import safe_name
from tests.support_report import add_dataset, add_run, all_metrics

runner = CliRunner()
BAD_NAMES = ["..", ".", "../escape", "a/b", ".hidden", "-flag", ""]


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], lines[0]


def files_under(folder: Path) -> dict[str, str]:
    """relative path -> content hash of every file under `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "store" / "r.duckdb"
    path.parent.mkdir()
    with open_store(path) as store:
        add_dataset(store, "d")
        add_run(store, "d", "nrms", "original", 1, all_metrics(0.6), stop_auc=(0.55, 0.6))
    return path


@pytest.mark.parametrize("name", BAD_NAMES)
def test_report_refuses_an_unsafe_dataset_and_writes_nothing_anywhere(db: Path, name: str) -> None:
    before = files_under(db.parent.parent)
    result = runner.invoke(app, ["--db", str(db), "report", "--dataset", name])
    one_line_error(result, "--dataset", "dataset name")
    assert files_under(db.parent.parent) == before


def test_report_of_a_store_holding_an_unsafe_name_writes_nothing_outside_the_reports_folder(db: Path) -> None:
    with open_store(db) as store:  # as a store written before names were checked could
        add_dataset(store, "..")
    before = files_under(db.parent.parent)
    result = runner.invoke(app, ["--db", str(db), "report"])
    one_line_error(result, "dataset in the store", "'..'")
    outside = {k: v for k, v in files_under(db.parent.parent).items() if not k.startswith("store/reports/")}
    assert outside == before


@pytest.mark.parametrize("command", [
    ["train", "--model", "nrms"],
    ["predict", "--model", "nrms", "--out", "p.txt"],
    ["generate", "--dry-run"],
])
@pytest.mark.parametrize("name", ["..", "../x", ".hidden"])
def test_train_predict_generate_refuse_an_unsafe_dataset(db: Path, command: list[str], name: str) -> None:
    before = files_under(db.parent.parent)
    result = runner.invoke(app, ["--db", str(db), *command, "--dataset", name])
    one_line_error(result, f"--dataset {name!r}", "dataset name")
    assert files_under(db.parent.parent) == before


def test_report_opens_the_store_read_only_and_changes_nothing(db: Path, tmp_path: Path) -> None:
    before = db.read_bytes()
    result = runner.invoke(app, ["--db", str(db), "report", "--dataset", "d", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert db.read_bytes() == before
    assert not db.with_name(db.name + ".wal").exists()
    assert (tmp_path / "out" / "epoch_curves.csv").exists()


@pytest.mark.parametrize("command", [["report"], ["report", "--dataset", "d"], ["models", "list"]])
def test_report_and_models_list_never_create_a_store(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "none.duckdb"
    result = runner.invoke(app, ["--db", str(missing), *command])
    if command[0] == "report":
        one_line_error(result, str(missing), "does not exist")
    else:
        assert result.exit_code == 0, result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, expected", [
    ("..", "_."), (".", "_"), (".hidden", "_hidden"), ("a/b", "a_b"), ("../x", "_._x"), ("mind.small", "mind.small"),
    ("", "_"),
])
def test_recsys_file_name_parts_are_never_dot_names(name: str, expected: str) -> None:
    part = safe_name(name)
    assert part == expected
    assert not part.startswith(".") and "/" not in part
