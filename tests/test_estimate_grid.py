"""scripts/estimate_grid.py: the training grid's hours, checked by hand on round numbers."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "estimate_grid.py"


@pytest.fixture(scope="module")
def grid():
    spec = importlib.util.spec_from_file_location("_estimate_grid", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_one_run_by_hand(grid):
    data = grid.GridData("d", train_impressions=10_000, clicks_per_impression=1.5, candidates_per_impression=20, dev_impressions=2_000)
    # matching: 10,000 x 0.9 x 1.5 = 13,500 samples per epoch; ranking: 10,000 x 0.9 x 20 = 180,000
    assert grid.samples_per_epoch(data, "nrms", 0.1) == pytest.approx(13_500)
    assert grid.samples_per_epoch(data, "din", 0.1) == pytest.approx(180_000)
    # evaluation: 3 epochs x 1,000 held-out impressions + 2,000 dev = 5,000
    assert grid.eval_impressions_per_run(data, 3, 0.1) == pytest.approx(5_000)
    rate = grid.ModelRate(train_samples_per_s=100, eval_impressions_per_s=50)
    # (3 x 13,500 / (100 x 10) + 5,000 / (50 x 10)) s = 40.5 + 10 = 50.5 s
    assert grid.run_hours(data, "nrms", rate, 10.0, 3, 0.1) == pytest.approx(50.5 / 3600)
    assert grid.run_hours(data, "nrms", rate, 1.0, 3, 0.1) == pytest.approx(505 / 3600)


def test_grid_multiplies_by_variants_and_seeds(grid):
    factors, sources = grid.speedups(None)
    rows = grid.grid_rows((grid.MIND_SMALL,), variants=6, seeds=5, epochs=3, holdout_fraction=0.1, factors=factors, sources=sources)
    assert [r["model"] for r in rows] == list(grid.CPU_RATES) and len(rows) == 8
    for r in rows:
        assert r["runs"] == 30 and r["gpu_hours"] == pytest.approx(30 * r["gpu_hours_per_run"])
        assert r["cpu_hours_per_run"] == pytest.approx(r["gpu_hours_per_run"] * r["speedup"])
        assert r["speedup_source"] == "assumed"
    assert {r["speedup"] for r in rows} == {grid.ASSUMED_SPEEDUP["light"], grid.ASSUMED_SPEEDUP["plmnr"]}


def test_a_cuda_gpu_check_replaces_the_assumption_for_the_models_it_measured(grid):
    nrms = grid.CPU_RATES["nrms"].train_samples_per_s
    measured = {"environment": {"device": "cuda"}, "train": [{"model": "nrms", "train_samples_per_s": nrms * 40}]}
    factors, sources = grid.speedups(measured)
    assert factors["nrms"] == pytest.approx(40.0) and sources["nrms"] == "measured (gpu_check)"
    assert factors["din"] == grid.ASSUMED_SPEEDUP["light"] and sources["din"] == "assumed"
    on_cpu = {"environment": {"device": "cpu"}, "train": [{"model": "nrms", "train_samples_per_s": nrms * 40}]}
    assert grid.speedups(on_cpu)[1]["nrms"] == "assumed"  # a CPU run of gpu_check says nothing about GPUs


def test_the_gpu_checks_plmnr_row_of_the_default_mode_is_the_grids_plmnr(grid):
    plmnr = grid.CPU_RATES["plmnr"].train_samples_per_s
    measured = {"environment": {"device": "cuda"}, "train": [
        {"model": "plmnr-cached", "train_samples_per_s": plmnr * 900}, {"model": "plmnr-exact", "train_samples_per_s": plmnr * 300}]}
    factors, sources = grid.speedups(measured)
    assert factors["plmnr"] == pytest.approx(300.0) and sources["plmnr"] == "measured (gpu_check)"


def test_plmnr_states_grid_uses_the_measured_ratio_and_its_own_gpu_row(grid):
    exact, states = grid.cpu_rates("exact")["plmnr"], grid.cpu_rates("states")["plmnr"]
    # 71 x (91.3 / 26.6) / 1.02 = 238.9 samples/s; evaluation encodes afresh in both modes
    assert states.train_samples_per_s == pytest.approx(71 * 91.3 / 26.6 / 1.02)
    assert states.eval_impressions_per_s == exact.eval_impressions_per_s
    assert grid.cpu_rates("states")["nrms"] == grid.CPU_RATES["nrms"]
    with pytest.raises(ValueError, match="cached"):
        grid.cpu_rates("cached")
    factors, sources = grid.speedups(None, "states")
    exact_rows = grid.grid_rows((grid.MIND_SMALL,), 6, 5, 3, 0.1, *grid.speedups(None))
    states_rows = grid.grid_rows((grid.MIND_SMALL,), 6, 5, 3, 0.1, factors, sources, "states")
    cpu = {r["model"]: (e["cpu_hours_per_run"], r["cpu_hours_per_run"]) for e, r in zip(exact_rows, states_rows)}
    assert cpu["plmnr"][1] < cpu["plmnr"][0] / 2 and cpu["nrms"][0] == cpu["nrms"][1]
    measured = {"environment": {"device": "cuda"}, "train": [
        {"model": "plmnr-exact", "train_samples_per_s": 71 * 300}, {"model": "plmnr-states", "train_samples_per_s": 71 * 900}]}
    factors, _ = grid.speedups(measured, "states")
    assert factors["plmnr"] == pytest.approx(71 * 900 / states.train_samples_per_s)


def test_unreadable_gpu_check_is_one_line_and_exit_2(grid, tmp_path, capsys):
    assert grid.main(["--gpu-check", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.json" in err[0]
    out = tmp_path / "grid.json"
    assert grid.main(["--out", str(out)]) == 0
    assert len(json.loads(out.read_text())["rows"]) == 16


def test_what_a_gpu_check_leaves_out_is_said_and_keeps_the_assumption(grid, tmp_path, capsys):
    partial = {"complete": False, "environment": {"device": "cuda"},
               "train": [{"model": "nrms", "train_samples_per_s": 20_000.0}],
               "failures": [{"part": "train din", "error": "RuntimeError: CUDA out of memory."}]}
    path = tmp_path / "gpu_check.json"
    path.write_text(json.dumps(partial))
    assert grid.main(["--gpu-check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "note: gpu_check.json is from a check stopped before its end" in out
    assert "note: gpu_check.json: train din failed (RuntimeError: CUDA out of memory.): that model keeps the assumed" in out
    factors, sources = grid.speedups(partial)
    assert sources["nrms"] == "measured (gpu_check)" and sources["din"] == "assumed"
    assert grid.gpu_check_notes({"environment": {"device": "cpu"}, "train": partial["train"]}) == [
        "gpu_check.json ran on cpu, not CUDA: none of its rates is used"]
    assert grid.gpu_check_notes({"complete": True, "environment": {"device": "cuda"}, "failures": []}) == []
    assert grid.gpu_check_notes(None) == []
