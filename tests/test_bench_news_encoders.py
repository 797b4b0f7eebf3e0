"""scripts/bench_news_encoders.py still runs (its --smoke sizes, without the LLM to stay short)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_run_compares_old_and_new_plmnr_and_trains_the_models(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_news_encoders.py"), "--smoke", "--models", "nrms,plmnr",
         "--threads", "1", "--out", str(tmp_path)],
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
    assert set(report["models"]) == {"nrms", "plmnr"}
    assert all(0.0 <= row["auc"] <= 1.0 and row["samples_per_s"] > 0 and row["cpu_seconds"] > 0
               for row in report["models"].values())
    assert "speed-up new vs old" in done.stdout
