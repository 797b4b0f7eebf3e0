"""scripts/bench_news_encoders.py still runs (its --smoke sizes, without the LLM to stay short)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_run_compares_old_and_new_plmnr_and_trains_the_models(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_news_encoders.py"), "--smoke", "--models", "nrms,plmnr,plmnr-states",
         "--threads", "1", "--step-bf16", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=ROOT, env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "news_encoders.json").read_text())
    steps = report["plmnr_steps"]
    assert steps["old"]["step_seconds"] > 0 and steps["new"]["step_seconds"] > 0
    assert steps["speedup"] == steps["old"]["step_seconds"] / steps["new"]["step_seconds"]
    assert steps["new-cached"]["refresh_seconds"] > 0 and steps["new-cached"]["cpu_seconds"] > 0
    cached = steps["new-cached"]["step_seconds"] + steps["new-cached"]["refresh_seconds"] / steps["steps_per_epoch"]
    assert steps["speedup_new-cached_with_refresh"] == steps["old"]["step_seconds"] / cached
    assert steps["new-states"]["refresh_seconds"] > 0 and "speedup_new-states_with_refresh" in steps
    from recsys.cpu import cpu_has_native_bf16

    if cpu_has_native_bf16():  # the bf16 steps are compared with the old model under the same autocast too
        assert steps["speedup_new-bf16_vs_old-bf16"] == steps["old-bf16"]["step_seconds"] / steps["new-bf16"]["step_seconds"]
        assert steps["speedup_new-bf16"] == steps["old"]["step_seconds"] / steps["new-bf16"]["step_seconds"]
        assert "speedup_old-bf16_vs_old-bf16" not in steps and "new-cached-bf16" in steps
        assert "new-states-bf16" in steps
        assert "x vs old-bf16" in done.stdout
    else:
        assert "old-bf16" not in steps and "new-bf16" not in steps
        assert "no avx512_bf16/amx_bf16" in done.stderr
    assert set(report["models"]) == {"nrms", "plmnr", "plmnr-states"}
    assert all(row["autocast"] == "float32" for row in report["models"].values())  # --bf16 off by default
    assert all(0.0 <= row["auc"] <= 1.0 and row["samples_per_s"] > 0 and row["cpu_seconds"] > 0
               for row in report["models"].values())
    assert "speed-up new vs old" in done.stdout


def load_bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_news_encoders", ROOT / "scripts" / "bench_news_encoders.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def saved_report(name: str, seed: int, auc: float, bf16: str = "auto") -> dict:
    return {"args": {"train_seeds": f"[{seed}]", "bf16": bf16}, "models": {name: {"auc": auc}}}


def test_compare_pairs_saved_runs_by_seed_and_tests_equivalence(tmp_path: Path, capsys) -> None:
    from recsys.stats import paired_difference

    bench = load_bench()
    exact, cached = {1: 0.60, 2: 0.58, 3: 0.61}, {1: 0.59, 2: 0.585, 3: 0.60, 4: 0.70}  # seed 4: no pair
    reports = [saved_report("plmnr", s, a) for s, a in exact.items()]
    reports += [saved_report("plmnr-cached", s, a) for s, a in cached.items()]
    reports += [saved_report("plmnr-cached", 1, 0.5, bf16="on")]
    multi = {"args": {"train_seeds": "[2, 3]", "bf16": "on"}, "models": {"plmnr-cached@2": {"auc": 0.55},
                                                                          "plmnr-cached@3": {"auc": 0.56}}}
    aucs = bench.seed_aucs([*reports, multi])
    assert aucs == {"plmnr": exact, "plmnr-cached": cached, "plmnr-cached+bf16": {1: 0.5, 2: 0.55, 3: 0.56}}
    lines = bench.compare_lines(aucs, "plmnr", 0.01)
    d = paired_difference([0.60, 0.58, 0.61], [0.59, 0.585, 0.60], 0.01)
    line = next(x for x in lines if x.startswith("plmnr − plmnr-cached "))
    assert f"over 3 seeds: {d.mean:+.4f}" in line and f"95 % CI {d.ci95[0]:+.4f}..{d.ci95[1]:+.4f}" in line
    assert line.endswith("equivalence not shown") and not d.equivalent
    with pytest.raises(ValueError, match="plmnr-cached seed 1 appears twice"):
        bench.seed_aucs([*reports, saved_report("plmnr-cached", 1, 0.6)])
    # a run that records its autocast is labelled by it, whatever --bf16 said ("auto" resolves per machine)
    resolved = [{"args": {"train_seeds": "[7]", "bf16": "auto"}, "models": {"plmnr": {"auc": 0.6, "autocast": "bfloat16"}}},
                {"args": {"train_seeds": "[7]", "bf16": "on"}, "models": {"plmnr": {"auc": 0.61, "autocast": "float32"}}}]
    assert bench.seed_aucs(resolved) == {"plmnr+bf16": {7: 0.6}, "plmnr": {7: 0.61}}
    # the CLI: saved files in, the lines out; a missing file or base is a one-line usage error
    paths = []
    for i, report in enumerate(reports):
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(report))
    assert bench.main(["--compare", *map(str, paths)])["aucs"] == {k: v for k, v in aucs.items() if k != "plmnr-cached+bf16"} | {"plmnr-cached+bf16": {1: 0.5}}
    assert line in capsys.readouterr().out
    for argv, message in ((["--compare", str(tmp_path / "none.json")], "no such report"),
                          (["--compare", str(paths[0]), "--compare-base", "nrms"], "no nrms runs")):
        with pytest.raises(SystemExit) as exit_:
            bench.main(argv)
        assert exit_.value.code != 0 and message in capsys.readouterr().err
