"""Import speed: `data import` of a MIND-small-sized synthetic folder (goal: under 30 s on 2 cores).

Usage: .venv/bin/python scripts/bench_import.py [--news 65000] [--users 50000] [--out bench-results]
Prints a table and writes bench-results/import.json. The synthetic folder is generated once and
reused (keyed by its size and seed), so reruns time the import alone.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from genre_local.data.mind_import import import_mind
from genre_local.data.synth import SynthSpec, write_synthetic_mind
from genre_local.machine import machine_info
from genre_local.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--news", type=int, default=65000)
    parser.add_argument("--users", type=int, default=50000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=2, help="imports to time; the best is reported")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    folder = args.out / f"synth-{args.news}n-{args.users}u-s{args.seed}"
    if not (folder / "train" / "behaviors.tsv").exists():
        started = time.perf_counter()
        write_synthetic_mind(folder, SynthSpec(news=args.news, users=args.users, seed=args.seed), force=True)
        print(f"generated {folder} in {time.perf_counter() - started:.1f}s")
    size_mb = sum(f.stat().st_size for f in folder.rglob("*.tsv")) / 1e6

    timings = []
    result = None
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            with open_store(Path(tmp) / "bench.duckdb") as store:
                started = time.perf_counter()
                result = import_mind(store, folder, "bench")
                timings.append(time.perf_counter() - started)
    assert result is not None
    impressions = sum(result.impressions.values())
    best = min(timings)
    payload = {
        "benchmark": "import",
        "machine": machine_info(),
        "folder_mb": round(size_mb, 1),
        "news": result.news,
        "impressions": result.impressions,
        "seconds": [round(t, 2) for t in timings],
        "best_seconds": round(best, 2),
        "impressions_per_s": round(impressions / best),
        "rows_per_s": round((impressions + result.news) / best),
        "goal_seconds": 30,
        "meets_goal": best < 30,
    }
    table = Table(title="data import (MIND-small-sized synthetic folder)")
    for column in ("news", "impressions", "MB", "best s", "impressions/s", "goal < 30 s"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{result.news:,}", f"{impressions:,}", f"{size_mb:.0f}", f"{best:.1f}",
        f"{payload['impressions_per_s']:,}", "yes" if payload["meets_goal"] else "NO",
    )
    Console().print(table)
    (args.out / "import.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload))


if __name__ == "__main__":
    main()
