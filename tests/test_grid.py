"""`genre-local grid`: the plan and its skip rule, worker processes, kill -9 and rerun, resume, Ray."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local import grid
from genre_local.cli import app
from genre_local.errors import UserError
from genre_local.store import open_store
from genre_local.store.generations import GenerationSource
from genre_local.store.runs import open_store_waiting
from recsys.catalog import MODEL_NAMES
from recsys.config import TrainConfig
from tests.support_train import add_all_generations, add_generation, make_store, one_thread, small_train_toml

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]

SMALL = small_train_toml(checkpoint_every=2)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The tiny store with generations, built once; each test works on its own copy."""
    db = make_store(tmp_path_factory.mktemp("grid-template") / "s.duckdb", users=12, news_per_cat=6)
    add_all_generations(db, users=12)
    return db


def _env(folder: Path, template: Path) -> tuple[Path, Path]:
    db = folder / "s.duckdb"
    shutil.copyfile(template, db)  # closed cleanly: the file holds everything (no WAL)
    config = folder / "genre.toml"
    config.write_text(SMALL)
    return db, config


def invoke(env: tuple[Path, Path], *args: str):
    return runner.invoke(app, ["--db", str(env[0]), "--config", str(env[1]), *args])


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0]


def cell_counts(db: Path, wait_s: float = 0.0) -> dict[tuple[str, str, int], int]:
    with open_store_waiting(db, wait_s=wait_s, poll_s=0.2) if wait_s else open_store(db) as store:
        rows = store.conn.execute("SELECT model, variant, seed, count(*) FROM runs GROUP BY ALL").fetchall()
    return {(m, v, int(s)): int(n) for m, v, s, n in rows}


# -- parsing and planning (no training) ------------------------------------------------------


def test_parse_models_and_variants() -> None:
    assert grid.parse_models("all") == tuple(MODEL_NAMES)
    assert grid.parse_models(" DIN, nrms ,din") == ("din", "nrms")
    for bad, needle in (("din,foo", "'foo'"), ("", "empty"), ("all,din", "'all'")):
        with pytest.raises(UserError, match=needle):
            grid.parse_models(bad)
    specs = grid.parse_variants("original, up+ns ,ns+up,ng", 3)
    assert [s.name for s in specs] == ["original", "ns+up", "ng"]  # one cell per canonical variant
    assert specs[2].ng_k == 3 and specs[0].ng_k == 0
    for bad, needle in (("original,xx", "--variants 'xx'"), ("ng+chain", "either ng"), (",", "empty")):
        with pytest.raises(UserError, match=needle):
            grid.parse_variants(bad, 2)


def _store_run(store, model: str, variant: str, seed: int, config: TrainConfig, features: str = "title,category",
               ng_k: int = 0, dataset: str = "tiny", source: GenerationSource | None = None,
               fingerprint: str | None = None) -> str:
    """A stored run as `train` stores it: from `source`, on the rows the store holds now (their
    fingerprint), unless `fingerprint` says otherwise."""
    from genre_local.store.runs import RunIdentity, write_runs
    from genre_local.store.variants import content_fingerprint
    from recsys.catalog import model_kind
    from recsys.train import RunResult
    from recsys.variants import parse_variant

    result = RunResult(seed=seed, eval_split="test", metrics={"test": {"all": {"auc": 0.6}}}, epochs_run=1,
                       best_epoch=1, epoch_seconds=[1.0], train_samples_per_s=[1.0], data_wait_seconds=[0.0],
                       dev_auc=[0.6], eval_impressions_per_s=1.0, processes=1)
    ident = RunIdentity(model, model_kind(model), dataset, variant, features, ng_k)
    stored = dataclasses.asdict(config) | {"variant": variant, "seeds": [seed], "image_file": None}
    if fingerprint is None:
        fingerprint = content_fingerprint(store.conn, dataset, parse_variant(variant, ng_k), source)
    experiment = f"x{model}{variant}{seed}{features}{ng_k}{dataset}{source.label if source else ''}"
    return write_runs(store, experiment, ident, stored, fingerprint, {}, "cpu", [result], source=source)[0]


def test_plan_skips_exactly_the_cells_stored_with_the_same_settings(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", users=8, news_per_cat=4)
    config = TrainConfig(epochs=2, seeds=2, lr=0.01)
    spec = grid.GridSpec("tiny", ("din", "nrms"), grid.parse_variants("original,ng", 2), config)
    with open_store(db) as store:
        same = _store_run(store, "din", "original", 1,
                          dataclasses.replace(config, seeds=1, threads=3, num_workers=1, track="none"))
        ng = _store_run(store, "din", "ng", 2, config, ng_k=2)
        _store_run(store, "din", "original", 2, dataclasses.replace(config, lr=0.02))  # other settings
        _store_run(store, "din", "ng", 1, config, ng_k=3)  # other ng_k
        _store_run(store, "nrms", "original", 1, config, features="title")  # other features
        _store_run(store, "nrms", "original", 2, config, dataset="other")  # other dataset
        _store_run(store, "nrms", "ng", 1, dataclasses.replace(config, epochs=3))  # other epochs
        plan = grid.plan_grid(store.conn, spec)
    assert plan.total == 8 and len(spec.cells()) == 8
    assert plan.stored == {grid.GridCell("din", "original", 1): same, grid.GridCell("din", "ng", 2): ng}
    assert [c.label for c in plan.todo] == ["din/original/seed 2", "din/ng/seed 1", "nrms/original/seed 1",
                                            "nrms/original/seed 2", "nrms/ng/seed 1", "nrms/ng/seed 2"]


def test_plan_ignores_the_settings_a_cell_s_model_does_not_read(tmp_path: Path) -> None:
    """A PLMNR-only setting (plmnr_history, lora_rank) or interest_fusion outside `up` changed in
    genre.toml redoes no NRMS cell; it does redo the PLMNR cell and the NRMS `up` cell."""
    db = make_store(tmp_path / "s.duckdb", users=8, news_per_cat=4)
    stored_config = TrainConfig(epochs=2, seeds=1)
    config = dataclasses.replace(stored_config, plmnr_history="cached", lora_rank=4, interest_fusion="paper")
    spec = grid.GridSpec("tiny", ("nrms", "plmnr"), grid.parse_variants("original,up", 2), config)
    with open_store(db) as store:
        runs = {(m, v): _store_run(store, m, v, 1, stored_config) for m in ("nrms", "plmnr") for v in ("original", "up")}
        plan = grid.plan_grid(store.conn, spec)
    assert plan.stored == {grid.GridCell("nrms", "original", 1): runs[("nrms", "original")]}
    assert [c.label for c in plan.todo] == ["nrms/up/seed 1", "plmnr/original/seed 1", "plmnr/up/seed 1"]


def test_grid_resolves_dire_s_encoder_as_train_does(tmp_path: Path, template: Path, monkeypatch) -> None:
    """Without [train] encoder, `train --model dire` reads the embedded SmolLM2 (its prepared
    folder, stored in the run's config): the grid's DIRE cell is the same run, planned as stored,
    and a cell to run gets that folder (the other models none, as from `train`)."""
    from genre_local.config import load_config
    from genre_local.llm.models import EMBEDDED_FOLDER
    from tests.support_llm import link_prepared_model

    env = _env(tmp_path, template)
    folder = link_prepared_model(tmp_path / "models") / EMBEDDED_FOLDER
    with open_store(env[0]) as store:
        stored = _store_run(store, "dire", "original", 1,
                            dataclasses.replace(load_config(env[1]).train, seeds=1, encoder=str(folder)))
    args = ("grid", "--dataset", "tiny", "--models", "dire,nrms", "--variants", "original,ns", "--seeds", "1", "--json")
    result = invoke(env, *args, "--dry-run")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["skipped"] == 1 and [(p["model"], p["variant"]) for p in payload["planned"]] == [
        ("dire", "ns"), ("nrms", "original"), ("nrms", "ns")]
    requests = []

    def capture(plan, base, **_: object) -> list:
        requests.extend(grid.CellJob(c, plan.spec.variant(c.variant), base, 1).request() for c in plan.todo)
        return []

    monkeypatch.setattr(grid, "execute", capture)
    assert invoke(env, *args).exit_code == 0
    assert {(r.model, r.spec.name, r.config.encoder) for r in requests} == {
        ("dire", "ns", str(folder)), ("nrms", "original", ""), ("nrms", "ns", "")}
    assert stored and cell_counts(env[0]) == {("dire", "original", 1): 1}


def test_threads_per_worker_share_the_cores() -> None:
    assert grid.threads_per_worker(2, cores=16) == 8
    assert grid.threads_per_worker(4, cores=2) == 1
    assert grid.threads_per_worker(3, cores=16) == 5


def test_user_mistakes_are_one_line_exit_2(tmp_path: Path, template: Path) -> None:
    env = _env(tmp_path, template)
    one_line_error(invoke(env, "grid", "--dataset", "tiny", "--models", "din,bert"), "--models", "'bert'")
    one_line_error(invoke(env, "grid", "--dataset", "tiny", "--variants", "original,nx"), "--variants 'nx'")
    one_line_error(invoke(env, "grid", "--dataset", "tiny", "--workers", "0"), "--workers")
    one_line_error(invoke(env, "grid", "--dataset", "tiny", "--engine", "spark"), "--engine spark", "local, ray")
    one_line_error(invoke(env, "grid", "--dataset", "tiny", "--seeds", "0"), "--seeds")
    one_line_error(invoke(env, "grid", "--dataset", "nope"), "dataset 'nope'")
    one_line_error(invoke(env, "grid", "--dataset", "tiny", "--features", "title,image"), "image")
    one_line_error(invoke(env, "grid", "--dataset", "tiny", "--ray-address", "127.0.0.1:9"), "--ray-address needs --engine ray")
    missing = (tmp_path / "none.duckdb")
    one_line_error(runner.invoke(app, ["--db", str(missing), "grid", "--dataset", "tiny"]), "does not exist")
    assert not missing.exists()
    assert cell_counts(env[0]) == {}


def test_dry_run_plans_and_trains_nothing(tmp_path: Path, template: Path) -> None:
    env = _env(tmp_path, template)
    result = invoke(env, "grid", "--dataset", "tiny", "--models", "din,nrms", "--variants", "original,ns",
                    "--seeds", "2", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["total"] == 8 and payload["skipped"] == 0 and payload["trained"] == 0
    assert payload["planned"][0] == {"model": "din", "variant": "original", "source": None, "seed": 1}
    assert payload["planned"][-1] == {"model": "nrms", "variant": "ns", "source": "m/compact", "seed": 2}
    assert "8 runs; 0 stored, 8 to run" in result.stderr and "sources: ns from m/compact" in result.stderr
    assert cell_counts(env[0]) == {}


def test_first_seed_moves_the_grids_seeds(tmp_path: Path, template: Path) -> None:
    env = _env(tmp_path, template)
    result = invoke(env, "grid", "--dataset", "tiny", "--models", "din", "--variants", "original",
                    "--seeds", "2", "--first-seed", "6", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert [cell["seed"] for cell in payload["planned"]] == [6, 7]
    one_line_error(invoke(env, "grid", "--dataset", "tiny", "--first-seed", "-1", "--dry-run"), "--first-seed must be")


def test_report_split_flag_reaches_the_grid_settings(tmp_path: Path, template: Path) -> None:
    """`grid --report-split dev` as `train --report-split dev`: the cell stored with dev reported
    counts only under the flag (or [train] report_split), and a bad value is a one-line error."""
    from genre_local.config import load_config

    env = _env(tmp_path, template)
    config = dataclasses.replace(load_config(env[1]).train, seeds=1, report_split="dev")
    with open_store(env[0]) as store:
        run_id = _store_run(store, "din", "original", 1, config)

    def planned(*flags: str) -> dict:
        result = invoke(env, "grid", "--dataset", "tiny", "--models", "din", "--variants", "original",
                        "--seeds", "1", "--dry-run", "--json", *flags)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout.strip().splitlines()[-1])

    assert planned()["skipped"] == 0  # [train] report_split is auto
    dev = planned("--report-split", "dev")
    assert (dev["skipped"], dev["planned"]) == (1, [])
    assert planned("--report-split", "test")["skipped"] == 0
    env[1].write_text(SMALL + 'report_split = "dev"\n')
    assert planned()["skipped"] == 1 and planned("--report-split", "auto")["skipped"] == 0
    one_line_error(invoke(env, "grid", "--dataset", "tiny", "--report-split", "holdout", "--dry-run"),
                   "--report-split", "'holdout'")
    assert run_id and cell_counts(env[0]) == {("din", "original", 1): 1}


# -- several generation sources (--llm) ------------------------------------------------------

M, M_LABEL, M2 = (GenerationSource("m", "compact"), GenerationSource("m", "compact", "label"),
                  GenerationSource("m2", "compact"))


@pytest.fixture(scope="module")
def two_llms(template: Path, tmp_path_factory) -> Path:
    """The template (every task from LLM m) plus enhanced titles from a second LLM m2, and m's
    profiles made by labelling too (the source m/compact+label): ns has two sources, up two."""
    db = tmp_path_factory.mktemp("grid-two-llms") / "s.duckdb"
    shutil.copyfile(template, db)
    with open_store(db) as store:
        for (nid,) in store.conn.execute("SELECT nid FROM news WHERE dataset = 'tiny'").fetchall():
            add_generation(store, "tiny", "summarize", nid, {"title": f"m2 says {nid}"}, model="m2")
        for u in range(12):
            add_generation(store, "tiny", "profile", f"U{u}", {"topics": ["health"], "regions": ["Ohio"]},
                           sampling={"method": "label"})
    return db


def _planned(env: tuple[Path, Path], *args: str) -> list[tuple[str, str, str | None, int]]:
    result = invoke(env, "grid", "--dataset", "tiny", "--models", "din", "--seeds", "1", "--dry-run", "--json", *args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["total"] == payload["skipped"] + len(payload["planned"])
    return [(p["model"], p["variant"], p["source"], p["seed"]) for p in payload["planned"]]


def test_llm_gives_one_cell_per_source_and_original_once(tmp_path: Path, two_llms: Path) -> None:
    env = _env(tmp_path, two_llms)
    assert _planned(env, "--variants", "original,ns", "--llm", "m/compact,m2") == [
        ("din", "original", None, 1), ("din", "ns", "m/compact", 1), ("din", "ns", "m2/compact", 1)]
    # all: every source of each variant; m2 wrote no profiles, so up has m's two methods only
    assert _planned(env, "--variants", "ns,up", "--llm", "all") == [
        ("din", "ns", "m/compact", 1), ("din", "ns", "m2/compact", 1),
        ("din", "up", "m/compact", 1), ("din", "up", "m/compact+label", 1)]
    # LLM/SET+label names the labelled profiles for up, and LLM/SET for ns (its outputs have no method)
    assert _planned(env, "--variants", "ns,up", "--llm", "m/compact+label") == [
        ("din", "ns", "m/compact", 1), ("din", "up", "m/compact+label", 1)]
    result = invoke(env, "grid", "--dataset", "tiny", "--models", "din", "--variants", "original,ns,up",
                    "--llm", "all", "--dry-run")
    assert "1 model(s) x 5 variant(s) x 1 seed(s) = 5 runs" in result.stderr
    assert "to run: din/ns (m2/compact) seed(s) 1\n" in result.stderr and "to run: din/original seed(s) 1" in result.stderr
    assert "sources: ns from m/compact, m2/compact; up from m/compact, m/compact+label" in result.stderr


def test_llm_mistakes_are_one_line_errors_naming_the_value(tmp_path: Path, two_llms: Path) -> None:
    env = _env(tmp_path, two_llms)
    grid_args = ("grid", "--dataset", "tiny", "--models", "din", "--dry-run")
    one_line_error(invoke(env, *grid_args, "--variants", "original,ns"),  # as `train` without --llm
                   "2 generation sources (m/compact, m2/compact)", "--llm")
    one_line_error(invoke(env, *grid_args, "--variants", "ns", "--llm", "m,zz"),
                   "--llm 'zz'", "stored sources: m/compact, m2/compact")
    one_line_error(invoke(env, *grid_args, "--variants", "ns,up", "--llm", "m2"),
                   "--llm 'm2'", "variant 'up'", "stored sources: m/compact, m/compact+label")
    one_line_error(invoke(env, *grid_args, "--variants", "up", "--llm", "m"), "--llm 'm' names 2 sources")
    one_line_error(invoke(env, *grid_args, "--variants", "original", "--llm", "m"), "read no generations")
    one_line_error(invoke(env, *grid_args, "--llm", ", "), "--llm is empty")
    one_line_error(invoke(env, *grid_args, "--llm", "all,m"), "'all'")
    assert cell_counts(env[0]) == {}


def test_a_stored_run_counts_for_its_own_source_and_data_only(tmp_path: Path, two_llms: Path) -> None:
    from genre_local.config import load_config

    env = _env(tmp_path, two_llms)
    config = dataclasses.replace(load_config(env[1]).train, seeds=1)
    with open_store(env[0]) as store:
        _store_run(store, "din", "ns", 1, config, source=M2)
        _store_run(store, "din", "up", 1, config, source=M_LABEL, fingerprint="rows since replaced")
        _store_run(store, "din", "original", 1, config)
    assert _planned(env, "--variants", "original,ns,up", "--llm", "all", "--seeds", "1") == [
        ("din", "ns", "m/compact", 1), ("din", "up", "m/compact", 1), ("din", "up", "m/compact+label", 1)]


def test_each_cell_s_request_carries_its_source(tmp_path: Path, two_llms: Path, monkeypatch) -> None:
    """What a worker (a process or a Ray task) trains: the cell's source, resolved again from
    --llm by train_and_store to the same source."""
    from genre_local.training import with_source

    env = _env(tmp_path, two_llms)
    requests = []

    def capture(plan, base, **_: object) -> list:
        requests.extend(grid.CellJob(c, plan.spec.variant(c.variant), base, 1).request() for c in plan.todo)
        return []

    monkeypatch.setattr(grid, "execute", capture)
    result = invoke(env, "grid", "--dataset", "tiny", "--models", "din", "--variants", "original,ns+up",
                    "--llm", "m/compact,m/compact+label", "--seeds", "1")
    assert result.exit_code == 0, result.output
    assert [(r.spec.name, r.llm, r.source) for r in requests] == [
        ("original", None, None), ("ns+up", "m/compact", M), ("ns+up", "m/compact+label", M_LABEL)]
    assert [with_source(dataclasses.replace(r, source=None)).source for r in requests] == [None, M, M_LABEL]


# -- execution --------------------------------------------------------------------------------


def test_an_interrupted_cell_resumes_from_its_checkpoint(tmp_path: Path, template: Path, monkeypatch) -> None:
    """Trained but not stored (a failed write): the rerun continues the cell's checkpoint and
    stores it once, without training again."""
    from genre_local.errors import StoreError

    env = _env(tmp_path, template)
    args = ["grid", "--dataset", "tiny", "--models", "din", "--variants", "original", "--epochs", "1", "--json"]

    from genre_local.store import runs

    real_open, opened = runs.open_store_waiting, []

    def locked(db_path, wait_s: float = 0.0, **options):
        opened.append(db_path)
        if len(opened) == 1:  # the grid's plan (it waits for a lock too): let it through
            return real_open(db_path, wait_s=wait_s, **options)
        raise StoreError(f"store {db_path} is locked by another genre-local process")  # the final write

    with monkeypatch.context() as patch:
        patch.setattr("genre_local.store.runs.open_store_waiting", locked)
        failed = invoke(env, *args)
    assert failed.exit_code == 2, failed.output
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is locked" in errors[0] and "rerunning the grid stores the runs" in errors[0]
    assert cell_counts(env[0]) == {}
    rerun = invoke(env, *args)
    assert rerun.exit_code == 0, rerun.output
    assert "din/original/seed 1: stored run" in rerun.stderr and "(resumed)" in rerun.stderr
    assert "[1/1]" in rerun.stderr and "ETA 0:00:00" in rerun.stderr
    assert cell_counts(env[0]) == {("din", "original", 1): 1}
    with open_store(env[0]) as store:
        epochs = store.conn.execute("SELECT epochs_run FROM runs").fetchone()[0]
    assert epochs == 1
    again = invoke(env, *args)
    assert json.loads(again.stdout.strip().splitlines()[-1])["trained"] == 0


def test_cells_of_two_sources_train_apart_each_in_its_own_checkpoint(tmp_path: Path, two_llms: Path) -> None:
    """ns from m and ns from m2 are two runs with two checkpoints: recsys keys a checkpoint by
    model, variant, features, settings and seed, so the second would otherwise find the first's
    (and refuse to resume it, or overwrite it)."""
    env = _env(tmp_path, two_llms)
    result = invoke(env, "grid", "--dataset", "tiny", "--models", "din", "--variants", "ns", "--llm", "m/compact,m2",
                    "--seeds", "1", "--epochs", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["trained"] == 2
    assert "din/ns (m2/compact)/seed 1: stored run" in result.stderr
    with open_store(env[0]) as store:
        rows = store.conn.execute("SELECT s.llm, c.checkpoint FROM runs r JOIN run_sources s USING (run_id) "
                                  "JOIN run_checkpoints c USING (run_id) ORDER BY s.llm").fetchall()
    assert [llm for llm, _ in rows] == ["m", "m2"] and rows[0][1] != rows[1][1]


def _grid_process(env: tuple[Path, Path], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "genre_local", "--db", str(env[0]), "--config", str(env[1]), "grid", *args],
        cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,  # its own process group: the kill reaches the workers too
    )


def test_two_workers_killed_mid_grid_and_rerun_store_every_cell_once(tmp_path: Path, template: Path) -> None:
    env = _env(tmp_path, template)
    args = ("--dataset", "tiny", "--models", "din,nrms", "--variants", "original,ns", "--workers", "2", "--epochs", "1")
    first = _grid_process(env, *args)
    lines = []
    try:
        deadline = time.monotonic() + 240
        for line in first.stderr:  # blocks line by line: the first finished cell, then kill -9
            lines.append(line)
            if line.startswith("[1/4]"):
                break
            assert time.monotonic() < deadline, lines
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL, lines
    # The workers die with the group (and PR_SET_PDEATHSIG); a loaded machine may take a moment
    # to tear a killed worker down and release its lock.
    killed = cell_counts(env[0], wait_s=60.0)
    assert 1 <= sum(killed.values()) < 4 and set(killed.values()) == {1}, (killed, lines)

    second = _grid_process(env, *args, "--json")
    out, err = second.communicate(timeout=400)
    assert second.returncode == 0, err
    payload = json.loads(out.strip().splitlines()[-1])
    assert payload["total"] == 4 and payload["skipped"] == sum(killed.values())
    assert payload["trained"] == 4 - payload["skipped"]
    assert f"{payload['skipped']} stored, {payload['trained']} to run (local, 2 at once)" in err
    assert "[4/4]" in err
    expected = {(m, v, 1): 1 for m in ("din", "nrms") for v in ("original", "ns")}
    assert cell_counts(env[0]) == expected

    third = invoke(env, "grid", *args, "--json")
    assert third.exit_code == 0, third.output
    assert json.loads(third.stdout.strip().splitlines()[-1]) | {"planned": []} == {
        "dataset": "tiny", "total": 4, "skipped": 4, "trained": 0, "planned": [], "stored_runs": []}
    assert cell_counts(env[0]) == expected


def test_a_cell_starting_while_another_worker_holds_the_store_waits_for_it(tmp_path: Path, template: Path) -> None:
    """Two workers start (or one starts as the other stores): the first store open of a cell (its
    generation source) waits for the lock like the others, instead of failing the grid."""
    from genre_local.errors import StoreError
    from genre_local.training import TrainRequest, with_source

    db, _ = _env(tmp_path, template)
    request = TrainRequest(db_path=db, model="din", dataset="tiny", spec=grid.parse_variants("ns", 0)[0],
                           config=TrainConfig(seeds=1), cache_dir=tmp_path / "cache",
                           checkpoint_base=tmp_path / "ckpt")
    # Another process with the store open for writing (a worker storing its cell); a line on its
    # stdin lets it close the store a second later.
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys, time; c = duckdb.connect({str(db)!r}); print('ready', flush=True); "
                               "sys.stdin.readline(); time.sleep(1.0); c.close()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match="is locked"):  # `train` itself (no wait) still fails at once
            with_source(request)
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        started = time.monotonic()
        waited = with_source(dataclasses.replace(request, store_wait_s=60.0))  # as grid workers run cells
        assert time.monotonic() - started >= 0.5
    finally:
        holder.kill()
        holder.wait()
    assert waited.source is not None and waited.source.llm == "m"


def test_ray_engine_trains_in_tasks_and_the_driver_stores(tmp_path: Path, template: Path) -> None:
    ray = pytest.importorskip("ray")
    env = _env(tmp_path, template)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {
        "PYTHONPATH": str(ROOT)}})
    try:
        result = invoke(env, "grid", "--dataset", "tiny", "--models", "din", "--variants", "original,ns",
                        "--epochs", "1", "--engine", "ray", "--workers", "2", "--json")
    finally:
        ray.shutdown()
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["trained"] == 2 and len(payload["stored_runs"]) == 2
    assert cell_counts(env[0]) == {("din", "original", 1): 1, ("din", "ns", 1): 1}
    with open_store(env[0]) as store:
        stored = store.conn.execute("SELECT count(*) FROM run_checkpoints").fetchone()[0]
        cohort = store.conn.execute(
            "SELECT r.variant, list(DISTINCT m.user_group) FILTER (WHERE m.user_group LIKE 'chain-cohort:%') "
            "FROM runs r JOIN run_metrics m USING (run_id) GROUP BY r.variant ORDER BY r.variant").fetchall()
        sources = store.conn.execute("SELECT r.variant, s.llm, s.prompt_set FROM runs r LEFT JOIN run_sources s "
                                     "USING (run_id) ORDER BY r.variant").fetchall()
    assert stored == 2  # the tasks' checkpoint folders, as train keys them
    assert cohort == [("ns", None), ("original", ["chain-cohort:m/compact"])]  # Table 7's cohort, as train
    assert sources == [("ns", "m", "compact"), ("original", None, None)]  # the source, as train records it
    rerun = invoke(env, "grid", "--dataset", "tiny", "--models", "din", "--variants", "original,ns",
                   "--epochs", "1", "--dry-run", "--json")
    assert json.loads(rerun.stdout.strip().splitlines()[-1])["skipped"] == 2


def test_ray_grid_connects_to_the_named_cluster_and_refuses_a_dead_address(tmp_path: Path, template: Path, monkeypatch) -> None:
    pytest.importorskip("ray")
    env = _env(tmp_path, template)
    dead = "127.0.0.1:9"  # the discard port: nothing listens there
    one_line_error(invoke(env, "grid", "--dataset", "tiny", "--models", "din", "--seeds", "1", "--epochs", "1",
                          "--engine", "ray", "--ray-address", dead), f"--ray-address {dead}", "nothing answers")
    # RAY_ADDRESS names the cluster the same way (Ray would refuse num_cpus for it).
    monkeypatch.setenv("RAY_ADDRESS", dead)
    one_line_error(invoke(env, "grid", "--dataset", "tiny", "--models", "din", "--seeds", "1", "--epochs", "1",
                          "--engine", "ray"), f"--ray-address {dead}", "nothing answers")
    assert cell_counts(env[0]) == {}
