"""Resume overhead: rerunning a finished `genre-local generate` command (goal: seconds, no engine start).

Usage: .venv/bin/python scripts/bench_resume.py [--limit 16] [--backend auto] [--news 1500 --users 600]
Prints a table and writes bench-results/resume.json.

Two scenarios, both timed through the real CLI in a fresh process, as a user would rerun it:
1. engine: `generate --task all --limit N` runs with the real engine, then the same command again.
2. whole dataset: every task over the whole dataset is first stored by the pipeline with an
   instant stub engine (valid outputs, no model: it only fills the store quickly), then the real
   CLI command without --limit is rerun. This is the rerun cost at full size: planning every
   prompt and checking every fingerprint against the store.
A rerun passes when it reports 0 new rows and loads no model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from genre_local.machine import machine_info

DATASET = "bench"
NO_MODEL_LINE = "no model loaded"


class StubBackend:
    """Answers every request instantly with a valid output for its task (store filling only)."""

    name = "stub"
    dtype = "stub"  # no engine: the run row says so

    def __init__(self) -> None:
        from genre_local.llm.backend import EngineOptions

        self.options = EngineOptions(model_dir=Path("stub"))

    def generate(self, requests: Sequence) -> list:
        from genre_local.data.taxonomy import CATEGORIES, PROFILE_TOPICS, US_STATES
        from genre_local.llm.backend import GenResult

        results = []
        for request in requests:
            digest = hashlib.sha256(json.dumps(request.messages).encode()).hexdigest()[:8]
            props = (request.schema or {}).get("properties", {})
            if "title" in props:
                text = json.dumps({"title": f"Stub headline number {digest}"})
            elif "topics" in props:
                text = json.dumps({"topics": list(PROFILE_TOPICS[:2]), "regions": [US_STATES[0]]})
            else:
                k = props["items"]["maxItems"]
                text = json.dumps({"items": [
                    {"title": f"Stub story {digest} part {i}", "abstract": "Stub.", "category": CATEGORIES[i % len(CATEGORIES)]}
                    for i in range(k)
                ]})
            results.append(GenResult(text, 1, 1, "stop"))
        return results

    def close(self) -> None:
        pass


def cli(db: Path, *args: str, timeout: int) -> tuple[float, dict, str]:
    """Run `genre-local --db DB ARGS --json` in a fresh process: (seconds, last JSON line, stdout)."""
    command = [sys.executable, "-m", "genre_local", "--db", str(db), *args, "--json"]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return seconds, json.loads(lines[-1]), proc.stdout


def prepare_store(out: Path, news: int, users: int, seed: int, name: str) -> Path:
    from genre_local.data.mind_import import import_mind
    from genre_local.data.synth import SynthSpec, write_synthetic_mind
    from genre_local.store import open_store

    folder = out / f"synth-{news}n-{users}u-s{seed}"
    if not (folder / "train" / "behaviors.tsv").exists():
        write_synthetic_mind(folder, SynthSpec(news=news, users=users, seed=seed), force=True)
    work = out / "resume"
    work.mkdir(parents=True, exist_ok=True)
    db = work / f"{name}.duckdb"
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    with open_store(db) as store:
        import_mind(store, folder, DATASET)
    return db


def fill_with_stub(db: Path, models_dir: Path) -> tuple[float, int]:
    """Store every task's outputs for the whole dataset under the keys the CLI's defaults make."""
    from genre_local.config import GenerateConfig
    from genre_local.llm.models import resolve_model
    from genre_local.llm.tasks import TASKS
    from genre_local.pipeline.plan import PlanSettings
    from genre_local.pipeline.runner import GenerationRun, LazyEngine, RunSettings

    cfg = GenerateConfig()
    # The model id is in every fingerprint. Resolving it prepares the embedded model once, as the
    # first real run would have; the stub itself never loads it.
    model_id = resolve_model(cfg.model, models_dir, {}).model_id
    plan = PlanSettings(dataset=DATASET, model_id=model_id, temperature=cfg.temperature, top_p=cfg.top_p,
                        seed=cfg.seed, per_user=cfg.per_user, history_items=cfg.history_items)
    started = time.perf_counter()
    stats = GenerationRun(db, RunSettings(plan=plan, backend="stub", batch_size=cfg.batch_size),
                          LazyEngine(StubBackend)).run(list(TASKS.values()))
    return time.perf_counter() - started, sum(s.new for s in stats)


def rerun(db: Path, label: str, first_args: list[str], timeout: int, first: tuple[float, dict, str] | None) -> dict:
    seconds, summary, stdout = cli(db, "generate", *first_args, timeout=timeout)
    engine_started = NO_MODEL_LINE not in stdout
    row = {
        "scenario": label,
        "command": "genre-local generate " + " ".join(first_args),
        "stored_requests": summary["requested"],
        "rerun_seconds": round(seconds, 2),
        "rerun_new": summary["new"],
        "rerun_skipped": summary["skipped"],
        "engine_started": engine_started,
        "passed": summary["new"] == 0 and not engine_started,
    }
    if first is not None:
        row["first_run_seconds"] = round(first[0], 2)
        row["first_run_new"] = first[1]["new"]
        row["first_run_valid"] = first[1]["valid"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=16, help="inputs per task in the engine scenario")
    parser.add_argument("--backend", default="auto", help="backend of the engine scenario's first run")
    parser.add_argument("--news", type=int, default=1500, help="synthetic dataset size (whole-dataset scenario)")
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-engine", action="store_true", help="only the whole-dataset scenario (no model run)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per CLI command")
    parser.add_argument("--smoke", action="store_true", help="tiny run: small dataset, whole-dataset scenario only")
    parser.add_argument("--models-dir", type=Path, default=None, help="where the embedded model is prepared (default OUT/models)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    if args.smoke:
        args.news, args.users, args.skip_engine = 200, 40, True
    args.out.mkdir(parents=True, exist_ok=True)
    models_dir = args.models_dir or args.out / "models"
    rows = []

    if not args.skip_engine:
        db = prepare_store(args.out, 1500, 600, args.seed, "engine")
        _link_models(db, models_dir)
        flags = ["--dataset", DATASET, "--task", "all", "--limit", str(args.limit), "--backend", args.backend]
        print(f"engine scenario: first run of generate {' '.join(flags)} ...", file=sys.stderr, flush=True)
        first = cli(db, "generate", *flags, timeout=args.timeout)
        rows.append(rerun(db, f"engine, {args.limit} inputs per task", flags, args.timeout, first))

    db = prepare_store(args.out, args.news, args.users, args.seed, "whole")
    _link_models(db, models_dir)
    fill_seconds, filled = fill_with_stub(db, models_dir)
    print(f"whole-dataset scenario: stored {filled:,} outputs with the stub engine in {fill_seconds:.0f}s", file=sys.stderr)
    flags = ["--dataset", DATASET, "--task", "all"]
    row = rerun(db, f"whole dataset ({args.news} news, {args.users} users), stub-filled", flags, args.timeout, None)
    row["fill_seconds"] = round(fill_seconds, 1)
    rows.append(row)

    from rich.console import Console
    from rich.table import Table

    table = Table(title="resume: rerun of a finished generate command")
    for column in ("scenario", "stored", "first run s", "rerun s", "new", "engine started", "passed"):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for r in rows:
        table.add_row(r["scenario"], f"{r['stored_requests']:,}", str(r.get("first_run_seconds", "-")),
                      f"{r['rerun_seconds']:.1f}", str(r["rerun_new"]), "yes" if r["engine_started"] else "no",
                      "yes" if r["passed"] else "NO")
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    payload = {
        "benchmark": "resume",
        "machine": machine_info(),
        "rows": rows,
        "goal": "rerun in seconds with no engine start",
        "meets_goal": all(r["passed"] for r in rows),
    }
    (args.out / ("resume-smoke.json" if args.smoke else "resume.json")).write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps({"benchmark": "resume", "meets_goal": payload["meets_goal"],
                      "rerun_seconds": [r["rerun_seconds"] for r in rows]}))
    if not payload["meets_goal"]:
        raise SystemExit(1)


def _link_models(db: Path, models_dir: Path) -> None:
    """The CLI prepares the embedded model under <store folder>/models; point that at the shared
    folder so each scenario's store does not convert the model again."""
    target = db.parent / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(models_dir.resolve(), target_is_directory=True)


if __name__ == "__main__":
    main()
