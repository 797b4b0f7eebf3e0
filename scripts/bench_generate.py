"""Generation throughput: the same GENRE requests through vLLM and transformers, side by side.

Usage: .venv/bin/python scripts/bench_generate.py [--requests 24] [--model llama|PATH] [--configs a,b,c,d]
Prints a table and writes bench-results/generate.json.

Configurations (each in its own child process, so each engine starts and frees memory alone):
  a  vLLM backend as `genre-local generate` runs it (prefix caching on, constrained decoding on)
  b  transformers backend: batched generate() with left padding (the baseline of every ratio)
  c  vLLM without prefix caching
  d  vLLM without constrained decoding
Every configuration runs the real pipeline (plan and render prompts, one engine call per task,
parse, validate, one store transaction per batch) on its own copy of one store, with the same
model, dtype, max tokens, per-task request count and greedy decoding, so every configuration
sends identical prompts. Engine start is timed apart and excluded from the rates.

Chain prompts hold each user's profile; the base store carries the synthetic users' true
interests as stored profiles, and the profile task runs last, so the chain prompts cannot
depend on what one configuration's profiler wrote.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from genre_local.machine import machine_info

# The profile task runs last: see the module docstring.
TASK_ORDER = ("summarize", "news", "chain", "profile")
DATASET = "bench"


@dataclass(frozen=True)
class Config:
    key: str
    backend: str
    label: str
    prefix_caching: bool = True
    constrained: bool = True


CONFIGS = {
    "a": Config("a", "vllm", "vLLM (prefix cache, constrained)"),
    "b": Config("b", "transformers", "transformers batched generate"),
    "c": Config("c", "vllm", "vLLM, no prefix caching", prefix_caching=False),
    "d": Config("d", "vllm", "vLLM, no constrained decoding", constrained=False),
}
BASELINE = "b"


# -- parent: data, model, children, table -----------------------------------------------------


def build_base_store(out: Path, news: int, users: int, seed: int) -> Path:
    """A fresh store with one synthetic dataset and its users' true interests stored as profiles."""
    from genre_local.data.mind_import import import_mind
    from genre_local.data.synth import SynthSpec, write_synthetic_mind
    from genre_local.store import open_store
    from genre_local.store.connection import now_utc
    from genre_local.store.datasets import read_truth
    from genre_local.store.generations import GenerationRecord, write_generations

    folder = out / f"synth-{news}n-{users}u-s{seed}"
    if not (folder / "train" / "behaviors.tsv").exists():
        write_synthetic_mind(folder, SynthSpec(news=news, users=users, seed=seed), force=True)
    db = out / "generate" / "base.duckdb"
    db.parent.mkdir(parents=True, exist_ok=True)
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    with open_store(db) as store:
        import_mind(store, folder, DATASET)
        truth = read_truth(store.conn, DATASET)
        created = now_utc()
        records = [
            GenerationRecord(
                fingerprint=f"bench-truth-{user}", dataset=DATASET, task="profile", input_id=user,
                model="bench-truth", prompt_version="truth", round=1, attempt=1, run_id="bench-truth",
                backend="truth", sampling="{}", prompt="[]", raw_output="",
                parsed=json.dumps({"topics": topics, "regions": [region] if region else []}),
                valid=True, error=None, prompt_tokens=0, completion_tokens=0, latency_s=0.0, created_at=created,
            )
            for user, (topics, region) in sorted(truth.items())
        ]
        write_generations(store, records)
    return db


def run_child(args: argparse.Namespace, config: Config, base_db: Path, model_dir: Path, model_id: str) -> dict:
    work = args.out / "generate"
    db = work / f"config-{config.key}.duckdb"
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    shutil.copyfile(base_db, db)
    # The chain reads only its own LLM's profiles (issue 9): the truth profiles stand in for them.
    from genre_local.store import open_store

    with open_store(db) as store:
        store.conn.execute("UPDATE generations SET model = ? WHERE run_id = 'bench-truth'", [model_id])
    result_file = work / f"config-{config.key}.json"
    result_file.unlink(missing_ok=True)
    log = work / f"config-{config.key}.log"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", config.key, "--db", str(db),
        "--model-dir", str(model_dir), "--model-id", model_id, "--requests", str(args.requests),
        "--per-user", str(args.per_user), "--dtype", args.dtype, "--max-model-len", str(args.max_model_len),
        "--gpu-memory-utilization", str(args.gpu_memory_utilization), "--hf-batch", str(args.hf_batch),
        "--result", str(result_file),
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    print(f"[{config.key}] {config.label} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with log.open("w") as handle:
        try:
            proc = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=args.child_timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    if code != 0 or not result_file.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        print(f"[{config.key}] FAILED ({code}); last lines of {log}:\n{tail}", file=sys.stderr, flush=True)
        return {"config": config.key, "error": f"exit {code}; see {log}"}
    result = json.loads(result_file.read_text())
    print(f"[{config.key}] done in {time.perf_counter() - started:.0f}s "
          f"(engine start {result['startup_seconds']:.1f}s)", file=sys.stderr, flush=True)
    return result


def rates(task: dict) -> dict:
    engine = task["engine_seconds"]
    wall = task["wall_seconds"]
    return {
        "gen_tok_s": task["completion_tokens"] / engine if engine else 0.0,
        "prompt_tok_s": task["prompt_tokens"] / engine if engine else 0.0,
        "req_s": task["requests"] / engine if engine else 0.0,
        "outside_share": task["outside_seconds"] / wall if wall else 0.0,
    }


def total(tasks: dict) -> dict:
    keys = ("requests", "valid", "prompt_tokens", "completion_tokens", "engine_seconds", "wall_seconds", "outside_seconds")
    return {k: sum(t[k] for t in tasks.values()) for k in keys}


def summarize(results: dict[str, dict], on_gpu: bool) -> dict:
    """Rates per config and task, ratios to the baseline, and the issue's goals."""
    base = results.get(BASELINE, {})
    rows = {}
    for key, result in results.items():
        if "error" in result:
            continue
        per_task = dict(result["tasks"])
        per_task["all"] = total(result["tasks"])
        rows[key] = {}
        for task, numbers in per_task.items():
            r = rates(numbers)
            if "tasks" in base:
                b_numbers = base["tasks"][task] if task != "all" else total(base["tasks"])
                b = rates(b_numbers)
                for name in ("gen_tok_s", "prompt_tok_s", "req_s"):
                    r[f"{name}_ratio"] = r[name] / b[name] if b[name] else None
            r["valid_share"] = numbers["valid"] / numbers["requests"] if numbers["requests"] else 0.0
            rows[key][task] = {**numbers, **r}
    goals = {}
    a = rows.get("a")
    if a and "tasks" in base:
        # Speed-up is judged on requests/s: the same requests done in less engine time.
        goals["profile_speedup"] = {"value": a["profile"]["req_s_ratio"], "goal": 3.0 if on_gpu else 2.0}
        goals["every_task_speedup"] = {"value": min(a[t]["req_s_ratio"] for t in TASK_ORDER), "goal": 1.0}
    if a:
        goals["outside_share_max"] = {"value": max(a[t]["outside_share"] for t in TASK_ORDER), "goal": 0.05, "below": True}
    for goal in goals.values():
        value = goal["value"]
        goal["met"] = value is not None and (value <= goal["goal"] if goal.get("below") else value >= goal["goal"])
    return {"rows": rows, "goals": goals}


def render(summary: dict, results: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("task", "cfg", "req", "valid%", "prompt tok/s", "gen tok/s", "req/s",
                   "gen ×b", "prompt ×b", "req ×b", "outside%"):
        table.add_column(column, justify="left" if column in ("task", "cfg") else "right")

    def ratio(value):
        return "-" if value is None else f"{value:.2f}"

    for task in (*TASK_ORDER, "all"):
        for key, per_task in summary["rows"].items():
            r = per_task[task]
            table.add_row(
                task, key, str(r["requests"]), f"{100 * r['valid_share']:.0f}",
                f"{r['prompt_tok_s']:,.0f}", f"{r['gen_tok_s']:,.1f}", f"{r['req_s']:.2f}",
                ratio(r.get("gen_tok_s_ratio")), ratio(r.get("prompt_tok_s_ratio")), ratio(r.get("req_s_ratio")),
                f"{100 * r['outside_share']:.1f}",
            )
        table.add_section()
    # Wide enough for the table when stdout is a file or pipe (Rich assumes 80 columns there).
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    console.print("cfg: " + "; ".join(f"{k} = {CONFIGS[k].label}" for k in summary["rows"]) + f"; ratios (×b) are to {BASELINE}")
    starts = ", ".join(f"{k} {r['startup_seconds']:.0f}s" for k, r in results.items() if "startup_seconds" in r)
    console.print(f"engine start (not in the rates): {starts}")
    for name, goal in summary["goals"].items():
        value = "n/a" if goal["value"] is None else f"{goal['value']:.3f}"
        sign = "<=" if goal.get("below") else ">="
        console.print(f"goal {name}: {value} (goal {sign} {goal['goal']}) {'met' if goal['met'] else 'NOT MET'}")
    for key, result in results.items():
        if "error" in result:
            console.print(f"config {key} failed: {result['error']}")


def parent(args: argparse.Namespace) -> None:
    from genre_local.llm.models import resolve_model

    args.out.mkdir(parents=True, exist_ok=True)
    keys = [k.strip() for k in args.configs.split(",") if k.strip()]
    unknown = [k for k in keys if k not in CONFIGS]
    if unknown or not keys:
        raise SystemExit(f"--configs: unknown {unknown or '(empty)'}; use a subset of {','.join(CONFIGS)}")
    started = time.perf_counter()
    resolved = resolve_model(args.model, args.models_dir or args.out / "models", {})
    base_db = build_base_store(args.out, args.news, args.users, args.seed)
    setup_seconds = time.perf_counter() - started
    results = {}
    for key in keys:
        results[key] = run_child(args, CONFIGS[key], base_db, resolved.folder, resolved.model_id)
    import torch

    on_gpu = torch.cuda.is_available()
    summary = summarize(results, on_gpu)
    payload = {
        "benchmark": "generate",
        "machine": machine_info(),
        "model": resolved.model_id,
        "model_dir": str(resolved.folder),
        "settings": {
            "requests_per_task": args.requests, "per_user": args.per_user, "dtype": args.dtype,
            "max_model_len": args.max_model_len, "gpu_memory_utilization": args.gpu_memory_utilization,
            "hf_micro_batch": args.hf_batch, "synth_news": args.news, "synth_users": args.users,
            "task_order": list(TASK_ORDER), "decoding": "greedy", "retries": 0,
        },
        "configs": {k: asdict(CONFIGS[k]) for k in keys},
        "results": results,
        "summary": summary,
        "setup_seconds": round(setup_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    render(summary, results, f"generation, {args.requests} requests per task, {resolved.model_id}, {args.dtype}")
    name = "generate-smoke.json" if args.smoke else "generate.json"
    (args.out / name).write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps({"benchmark": "generate", "goals": summary["goals"], "total_seconds": payload["total_seconds"]}))
    if any("error" in r for r in results.values()):
        raise SystemExit(1)


# -- child: one configuration, one engine --------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    from genre_local.llm.backend import EngineOptions, GenRequest, open_backend
    from genre_local.llm.tasks import TASKS
    from genre_local.pipeline.plan import PlanSettings
    from genre_local.pipeline.runner import GenerationRun, LazyEngine, RunSettings

    config = CONFIGS[args.child]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    options = EngineOptions(
        model_dir=Path(args.model_dir), dtype=args.dtype, max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization, prefix_caching=config.prefix_caching,
        micro_batch=args.hf_batch,
    )
    started = time.perf_counter()
    backend = open_backend(config.backend, options)
    # One tiny request first: lazy first-call work (compilation, allocator warm-up) is start-up.
    backend.generate([GenRequest(messages=({"role": "user", "content": "Say hello."},), max_tokens=4)])
    startup = time.perf_counter() - started
    settings = RunSettings(
        plan=PlanSettings(dataset=DATASET, model_id=args.model_id, per_user=args.per_user, limit=args.requests,
                          constrained=config.constrained),
        backend=config.backend, retries=0, batch_size=max(1, args.requests),
    )
    try:
        run = GenerationRun(Path(args.db), settings, LazyEngine(lambda: backend))
        stats = run.run([TASKS[name] for name in TASK_ORDER])
    finally:
        backend.close()
    tasks = {
        s.task: {
            "requests": s.new, "valid": s.valid, "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens, "engine_seconds": s.engine_seconds,
            "wall_seconds": s.wall_seconds, "outside_seconds": s.outside_seconds, "engine_calls": s.attempts,
        }
        for s in stats
    }
    Path(args.result).write_text(json.dumps({"config": config.key, "startup_seconds": startup, "tasks": tasks}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama", help="'llama' (embedded SmolLM2) or a local HF model folder")
    parser.add_argument("--configs", default="a,b,c,d", help="which configurations to run (see the docstring)")
    parser.add_argument("--requests", type=int, default=24, help="requests per task (the first N inputs)")
    parser.add_argument("--per-user", type=int, default=1, help="news per cold user in news/chain (max tokens 16+84*K)")
    parser.add_argument("--dtype", default=None, help="default float32 on CPU, bfloat16 on GPU")
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--gpu-memory-utilization", type=float, default=None,
                        help="vLLM memory share (on CPU: share of RAM for the KV cache); default 0.12 CPU, 0.8 GPU")
    parser.add_argument("--hf-batch", type=int, default=16, help="transformers rows per generate() call")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in the transformers child (default: torch's choice)")
    parser.add_argument("--news", type=int, default=1500, help="synthetic dataset size (news)")
    parser.add_argument("--users", type=int, default=600, help="synthetic dataset size (users)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--models-dir", type=Path, default=None, help="where the embedded model is prepared (default OUT/models)")
    parser.add_argument("--child-timeout", type=int, default=900, help="seconds per configuration")
    parser.add_argument("--smoke", action="store_true", help="tiny run: transformers only, 1 request per task, 1 thread")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--child", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--model-id", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dtype is None or args.gpu_memory_utilization is None:
        import torch

        gpu = torch.cuda.is_available()
        args.dtype = args.dtype or ("bfloat16" if gpu else "float32")
        args.gpu_memory_utilization = args.gpu_memory_utilization or (0.8 if gpu else 0.12)
    if args.smoke:
        args.configs, args.requests, args.news, args.users = "b", 1, 200, 40
        args.threads = args.threads or 1
    if args.requests < 1 or args.per_user < 1:
        raise SystemExit("--requests and --per-user must be at least 1")
    if args.child:
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
