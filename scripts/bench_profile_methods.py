"""Profile methods side by side on one store and one engine (BENCHMARKS.md section 8).

    flock /tmp/genre-engine.lock python scripts/bench_profile_methods.py DB DATASET \
        --methods generate,label --chunk 50 --users 291 --budget 420 --log OUT.jsonl

Runs the profiler of each method on the first `chunk` users, then the next chunk, method after
method (A B A B ...), exactly as `generate --task profile --profile-method M --limit N` would
(one GenerationRun per step, greedy, compact prompts). Each step's new work only is timed (a
rerun skips what is stored), one JSON line per step goes to --log, and a step is not started
once --budget seconds have passed, so a locked run stays short: call again to go on.
`--report` prints each method's fidelity with chance over all users done, and engine seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from genre_local.llm.backend import EngineOptions, open_backend
from genre_local.llm.models import EMBEDDED_ALIAS, resolve_model
from genre_local.llm.prompt_sets import prompt_set_named
from genre_local.pipeline.fidelity import format_fidelity, profile_fidelity
from genre_local.pipeline.plan import Planner, PlanSettings
from genre_local.pipeline.runner import GenerationRun, LazyEngine, RunSettings
from genre_local.store import datasets, generations, open_store


def _settings(dataset: str, model_id: str, limit: int, batch_size: int) -> RunSettings:
    return RunSettings(plan=PlanSettings(dataset=dataset, model_id=model_id, limit=limit), backend="vllm",
                       batch_size=batch_size)


def run(args: argparse.Namespace, model_id: str, folder: Path) -> None:
    begin = time.perf_counter()
    engine = LazyEngine(lambda: open_backend("vllm", EngineOptions(model_dir=folder)))
    tasks = {m: prompt_set_named("compact").resolve_tasks("profile", m)[0] for m in args.methods}
    try:
        for limit in range(args.chunk, args.users + args.chunk, args.chunk):
            for method in args.methods:
                if time.perf_counter() - begin > args.budget:
                    print("budget spent: call again to go on", flush=True)
                    return
                settings = _settings(args.dataset, model_id, min(limit, args.users), args.batch_size)
                stats = GenerationRun(args.db, settings, engine).run_task(tasks[method], 1)
                line = {"method": method, "limit": min(limit, args.users), "new": stats.new,
                        "engine_s": round(stats.engine_seconds, 2), "startup_s": round(stats.startup_seconds, 2),
                        "prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
                        "load": os.getloadavg()[0]}
                print(json.dumps(line), flush=True)
                with args.log.open("a") as log:
                    log.write(json.dumps(line) + "\n")
    finally:
        engine.close()


def report(args: argparse.Namespace, model_id: str) -> None:
    """Fidelity over the users done, and engine time and tokens from the stored rows (each row
    carries its share of its engine call, so a step cut short by the lock's timeout still counts)."""
    lines = [json.loads(x) for x in args.log.read_text().splitlines()] if args.log.exists() else []
    with open_store(args.db) as store:
        truth = datasets.read_truth(store.conn, args.dataset)
        for method in args.methods:
            task = prompt_set_named("compact").resolve_tasks("profile", method)[0]
            limit = max((x["limit"] for x in lines if x["method"] == method), default=0)
            planner = Planner(store.conn, PlanSettings(dataset=args.dataset, model_id=model_id, limit=limit))
            items = planner.plan(store.conn, task, 1)
            users = {u.user_id for u in planner.task_users(task)}
            if task.requires is not None and task.requires.subject.value == "news":
                items += planner.plan(store.conn, task.requires, 1, only_users=users)
            profiles = generations.profiles_with_fingerprints(store.conn, [i.fingerprint for i in items])
            fidelity = profile_fidelity(profiles, truth)
            engine, prompt, completion = store.conn.execute(
                "SELECT sum(latency_s), sum(prompt_tokens), sum(completion_tokens) FROM generations "
                "WHERE fingerprint IN (SELECT unnest(?::VARCHAR[]))", [[i.fingerprint for i in items]]).fetchone()
            n = max(len(users), 1)
            print(f"{method}: {len(users)} users, {len(profiles)} profiles, {len(items)} rows; "
                  f"{format_fidelity(fidelity) if fidelity else 'no fidelity'}; engine {engine or 0:.1f}s = "
                  f"{(engine or 0) / n:.2f} s/user; tokens/user {(prompt or 0) / n:.0f} prompt + "
                  f"{(completion or 0) / n:.0f} generated; load {[x['load'] for x in lines if x['method'] == method]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db", type=Path)
    parser.add_argument("dataset")
    parser.add_argument("--methods", type=lambda s: s.split(","), default=["generate", "label"])
    parser.add_argument("--chunk", type=int, default=50)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--budget", type=float, default=420.0)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    resolved = resolve_model(EMBEDDED_ALIAS, args.db.parent / "models", {})
    if args.report:
        report(args, resolved.model_id)
    else:
        run(args, resolved.model_id, resolved.folder)


if __name__ == "__main__":
    main()
