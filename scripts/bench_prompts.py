"""The two prompt sets side by side on one model: validity, profile fidelity, tokens, seconds.

Usage: .venv/bin/python scripts/bench_prompts.py [--requests 24] [--model llama|PATH] [--backend vllm]
Prints a table and writes bench-results/prompts.json. Run the vLLM engine under the shared
engine lock on a shared machine (see README, "Benchmarks").

One synthetic dataset (`data synth`, with true user interests), one engine, one store: each set
runs the real pipeline (GenerationRun: plan, render, one engine call per task and batch, parse,
validate, store) on the first N inputs of every task in GENRE's order, greedy, without retries,
so validity is the prompts' own (a retry would sample again and hide the difference). The sets
never read each other's outputs (the chain reads the profiles of its own set). Sets run one after
the other in the order given, against the same started engine; engine start is timed apart.

What differs by design: the paper set sends one request per synthetic news (news, chain: K
requests per cold user, sampled at temperature 1.0, since K greedy requests would be identical),
shows the whole history (compact: the last 20 reads), and lets profiles name every topic and
state (compact: 5 and 3), so its recall is not comparable one to one (naming more topics raises
recall); precision@3 and region accuracy are.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from genre_local.machine import machine_info

DATASET = "bench"


def build_store(out: Path, news: int, users: int, seed: int) -> Path:
    from genre_local.data.mind_import import import_mind
    from genre_local.data.synth import SynthSpec, write_synthetic_mind
    from genre_local.store import open_store

    folder = out / f"synth-{news}n-{users}u-s{seed}"
    if not (folder / "train" / "behaviors.tsv").exists():
        write_synthetic_mind(folder, SynthSpec(news=news, users=users, seed=seed), force=True)
    db = out / "prompts" / "bench.duckdb"
    db.parent.mkdir(parents=True, exist_ok=True)
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    with open_store(db) as store:
        import_mind(store, folder, DATASET)
    return db


def chance_precision_at_3(db: Path, users: list[str]) -> float | None:
    """Precision@3 of three topics drawn at random from the 19: the mean share of true topics."""
    from genre_local.data.taxonomy import PROFILE_TOPICS
    from genre_local.store import open_store
    from genre_local.store.datasets import read_truth

    with open_store(db, read_only=True) as store:
        truth = read_truth(store.conn, DATASET)
    known = [truth[u] for u in users if u in truth]
    if not known:
        return None
    return sum(len(set(topics)) / len(PROFILE_TOPICS) for topics, _ in known) / len(known)


def output_shape(db: Path, prompt_set: str) -> dict:
    """What validity does not show: distinct generated titles per generated news (a degenerate
    generator passes the parser with the same title again and again), and how many topics and
    states a valid profile names (naming nearly all raises recall and region accuracy)."""
    from genre_local.store import open_store

    with open_store(db, read_only=True) as store:
        news = dict((task, (n, distinct)) for task, n, distinct in store.conn.execute(
            "SELECT source_task, count(*), count(DISTINCT lower(title)) FROM synthetic_news "
            "WHERE dataset = ? AND prompt_set = ? GROUP BY source_task", [DATASET, prompt_set]).fetchall())
        topics, regions = store.conn.execute(
            "SELECT avg(len(from_json(parsed -> 'topics', '[\"VARCHAR\"]'))), "
            "avg(len(from_json(parsed -> 'regions', '[\"VARCHAR\"]'))) FROM generations "
            "WHERE dataset = ? AND task = 'profile' AND valid AND prompt_set = ?", [DATASET, prompt_set]).fetchone()
    return {"distinct_titles": {task: {"news": n, "distinct": d} for task, (n, d) in news.items()},
            "profile_topics_mean": topics, "profile_regions_mean": regions}


def run_set(db: Path, name: str, engine, args: argparse.Namespace, model_id: str, backend: str) -> dict:
    from genre_local.llm.prompt_sets import prompt_set_named
    from genre_local.pipeline.plan import PlanSettings
    from genre_local.pipeline.runner import GenerationRun, RunSettings

    prompt_set = prompt_set_named(name)
    settings = RunSettings(
        plan=PlanSettings(dataset=DATASET, model_id=model_id, per_user=args.per_user, limit=args.requests,
                          prompt_set=name, context_tokens=args.max_model_len),
        backend=backend, retries=0, batch_size=max(1, args.requests * args.per_user),
    )
    run = GenerationRun(db, settings, engine)
    stats = run.run(list(prompt_set.tasks.values()))
    profile_users = [u.user_id for u in run.planner.task_users(prompt_set.task("profile"))]
    tasks = {}
    for s in stats:
        tasks[s.task] = {
            "requests": s.new, "valid": s.valid, "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens, "engine_seconds": round(s.engine_seconds, 2),
            "wall_seconds": round(s.wall_seconds, 2), "errors": s.errors,
            "fidelity": None if s.fidelity is None else {
                "precision_at_3": s.fidelity.precision_at_3, "recall": s.fidelity.recall,
                "region_accuracy": s.fidelity.region_accuracy, "users": s.fidelity.users,
            },
        }
    return {"prompt_set": name, "run_id": run.run_id, "tasks": tasks,
            "chance_precision_at_3": chance_precision_at_3(db, profile_users), "shape": output_shape(db, name)}


def render(results: list[dict]) -> None:
    print("| task | set | requests | valid | prompt tok/req | generated tok/req | engine s | s/req |")
    print("|---|---|--:|--:|--:|--:|--:|--:|")
    for task in ("summarize", "profile", "news", "chain"):
        for r in results:
            t = r["tasks"].get(task)
            if not t or not t["requests"]:
                continue
            n = t["requests"]
            print(f"| {task} | {r['prompt_set']} | {n} | {100 * t['valid'] / n:.0f} % | {t['prompt_tokens'] / n:,.0f} | "
                  f"{t['completion_tokens'] / n:,.1f} | {t['engine_seconds']:.1f} | {t['engine_seconds'] / n:.2f} |")
    print()
    print("| set | precision@3 | chance precision@3 | recall | region accuracy | users |")
    print("|---|--:|--:|--:|--:|--:|")
    for r in results:
        f = r["tasks"].get("profile", {}).get("fidelity")
        chance = r["chance_precision_at_3"]
        if f:
            print(f"| {r['prompt_set']} | {f['precision_at_3']:.3f} | {chance:.3f} | {f['recall']:.3f} | "
                  f"{f['region_accuracy']:.3f} | {f['users']} |")
    print()
    render_shape(results)


def render_shape(results: list[dict]) -> None:
    print("| set | news: distinct titles | chain: distinct titles | topics per profile | states per profile |")
    print("|---|--:|--:|--:|--:|")
    for r in results:
        shape = r["shape"]
        titles = shape["distinct_titles"]
        cells = [f"{titles[t]['distinct']} of {titles[t]['news']}" if t in titles else "—" for t in ("news", "chain")]
        print(f"| {r['prompt_set']} | {cells[0]} | {cells[1]} | {shape['profile_topics_mean'] or 0:.1f} | "
              f"{shape['profile_regions_mean'] or 0:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama", help="'llama' (embedded SmolLM2) or a local HF model folder")
    parser.add_argument("--backend", default="vllm", choices=("vllm", "transformers"))
    parser.add_argument("--sets", default="compact,paper", help="prompt sets, in the order they run")
    parser.add_argument("--requests", type=int, default=24, help="inputs per task (the first N)")
    parser.add_argument("--per-user", type=int, default=2, help="synthetic news per cold user (the paper: 2)")
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--news", type=int, default=400)
    parser.add_argument("--users", type=int, default=160)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--models-dir", type=Path, default=None, help="where the embedded model is prepared (default OUT/models)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()

    from genre_local.llm.backend import EngineOptions, GenRequest, open_backend
    from genre_local.llm.models import resolve_model
    from genre_local.llm.prompt_sets import prompt_set_named
    from genre_local.pipeline.runner import LazyEngine

    sets = [prompt_set_named(s.strip(), "--sets").name for s in args.sets.split(",") if s.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    resolved = resolve_model(args.model, args.models_dir or args.out / "models", {})
    db = build_store(args.out, args.news, args.users, args.seed)
    options = EngineOptions(model_dir=resolved.folder, max_model_len=args.max_model_len)
    start = time.perf_counter()
    backend = open_backend(args.backend, options)
    backend.generate([GenRequest(messages=({"role": "user", "content": "Say hello."},), max_tokens=4)])
    startup = time.perf_counter() - start
    engine = LazyEngine(lambda: backend)
    try:
        results = [run_set(db, name, engine, args, resolved.model_id, args.backend) for name in sets]
    finally:
        backend.close()
    payload = {
        "benchmark": "prompts", "machine": machine_info(), "model": resolved.model_id, "backend": args.backend,
        "settings": {"requests_per_task": args.requests, "per_user": args.per_user, "max_model_len": args.max_model_len,
                     "synth_news": args.news, "synth_users": args.users, "seed": args.seed, "retries": 0,
                     "temperature": "greedy (paper news/chain: 1.0, one news per request)", "sets": sets},
        "startup_seconds": round(startup, 1), "results": results,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    render(results)
    (args.out / "prompts.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps({"benchmark": "prompts", "startup_seconds": payload["startup_seconds"],
                      "total_seconds": payload["total_seconds"]}))


if __name__ == "__main__":
    main()
