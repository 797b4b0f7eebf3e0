"""Generation throughput: the same GENRE requests through vLLM and transformers, side by side.

Usage: .venv/bin/python scripts/bench_generate.py [--requests 24] [--model llama|PATH] [--configs a,b,c,d]
Prints a table and writes bench-results/generate.json.

Configurations (each in its own child process, so each engine starts and frees memory alone):
  a  vLLM backend as `genre-local generate` runs it (prefix caching on, constrained decoding on)
  b  transformers backend: batched generate() with left padding (the baseline of every ratio)
  c  vLLM without prefix caching
  d  vLLM without constrained decoding
  e, f  as a, in float32 / bfloat16 (whatever --dtype says), for the dtype comparison
  g, h  as e, f with the engine's OpenMP threads bound to every CPU (VLLM_CPU_OMP_THREADS_BIND);
        vLLM's own default on x86 keeps one core for its front-end process
Every configuration runs the real pipeline (plan and render prompts, one engine call per task,
parse, validate, one store transaction per batch) on its own copy of one store, with the same
model, dtype, max tokens, per-task request count and greedy decoding, so every configuration
sends identical prompts. Engine start is timed apart and excluded from the rates.

Close to the hardware (--roofline, on by default, CPU only): after its run each vLLM child
replays every engine call's requests from a cold prefix cache with max_tokens=1, which times the
prefill (the rest of the call is decode) and says which prompt tokens the batch shared through the
cache. FLOPs are counted from the model's config.json (genre_local/llm/compute_peak.py). The
parent then measures torch matmul GFLOP/s on the model's layer shapes (float32 and bfloat16, one
thread and every CPU, 32 and 1024 rows: a decode batch and a prefill chunk) and prints the
engine's FLOP/s as a share of them.

Chain prompts hold each user's profile; the base store carries the synthetic users' true
interests as stored profiles, and the profile task runs last, so the chain prompts cannot
depend on what one configuration's profiler wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
    dtype: str | None = None  # None: --dtype
    # VLLM_CPU_OMP_THREADS_BIND for the child: None leaves the environment as it is; "all"
    # binds the engine's OpenMP threads to every CPU this process may use.
    threads_bind: str | None = None


CONFIGS = {
    "a": Config("a", "vllm", "vLLM (prefix cache, constrained)"),
    "b": Config("b", "transformers", "transformers batched generate"),
    "c": Config("c", "vllm", "vLLM, no prefix caching", prefix_caching=False),
    "d": Config("d", "vllm", "vLLM, no constrained decoding", constrained=False),
    "e": Config("e", "vllm", "vLLM as (a), float32", dtype="float32"),
    "f": Config("f", "vllm", "vLLM as (a), bfloat16", dtype="bfloat16"),
    "g": Config("g", "vllm", "vLLM as (a), float32, threads on all CPUs", dtype="float32", threads_bind="all"),
    "h": Config("h", "vllm", "vLLM as (a), bfloat16, threads on all CPUs", dtype="bfloat16", threads_bind="all"),
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
        "--per-user", str(args.per_user), "--dtype", config.dtype or args.dtype, "--max-model-len", str(args.max_model_len),
        "--gpu-memory-utilization", str(args.gpu_memory_utilization), "--hf-batch", str(args.hf_batch),
        "--result", str(result_file),
    ]
    if args.max_tokens_cap is not None:
        command += ["--max-tokens-cap", str(args.max_tokens_cap)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.roofline:
        command += ["--roofline"]
    env = dict(os.environ)
    if config.threads_bind == "all":
        env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
    elif config.threads_bind is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = config.threads_bind
    print(f"[{config.key}] {config.label} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with log.open("w") as handle:
        try:
            proc = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=args.child_timeout, env=env)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    if code != 0 or not result_file.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        print(f"[{config.key}] FAILED ({code}); last lines of {log}:\n{tail}", file=sys.stderr, flush=True)
        return {"config": config.key, "error": f"exit {code}; see {log}"}
    result = json.loads(result_file.read_text())
    result["dtype"] = config.dtype or args.dtype
    result["engine_cpus"] = engine_cpus(log.read_text(errors="replace"))
    print(f"[{config.key}] done in {time.perf_counter() - started:.0f}s "
          f"(engine start {result['startup_seconds']:.1f}s)", file=sys.stderr, flush=True)
    return result


def engine_cpus(log: str) -> list[int] | None:
    """The CPUs vLLM bound its worker's OpenMP threads to, from its start-up log line
    ("local_rank=0, core ids=[1]"); None when the log does not say (transformers, other builds)."""
    found = re.findall(r"local_rank=0, core ids=\[([0-9, ]*)\]", log)
    if not found:
        return None
    return [int(cpu) for cpu in found[-1].replace(" ", "").split(",") if cpu]


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


# GEMM rows measured: a decode step's batch (max_num_seqs on CPU) and a prefill chunk.
DECODE_ROWS = 32
PREFILL_ROWS = 1024
SHARE_GOAL = 0.5


def measure_gemm_rates(model_dir: Path, seconds: float) -> list[dict]:
    """torch matmul GFLOP/s on the model's layer shapes: float32 and bfloat16, one thread and
    every usable CPU, decode and prefill row counts; each the best of three short rounds, as
    other work on a shared machine only ever slows a round down."""
    from genre_local.llm.compute_peak import measure_gemm, read_model_shape

    shape = read_model_shape(model_dir)
    if shape is None:
        return []
    cpus = len(os.sched_getaffinity(0))
    rates = []
    for dtype in ("float32", "bfloat16"):
        for threads in sorted({1, cpus}):
            for rows in (DECODE_ROWS, PREFILL_ROWS):
                best = max(measure_gemm(shape, dtype, threads, rows, seconds / 3).gflops for _ in range(3))
                rates.append({"dtype": dtype, "threads": threads, "rows": rows, "gflops": best})
    return rates


def gemm_rate(rates: list[dict], dtype: str, threads: int | None = None, rows: int | None = None) -> float | None:
    """The best measured rate for a dtype, optionally at one thread count and row count."""
    matching = [r["gflops"] for r in rates if r["dtype"] == dtype and threads in (None, r["threads"])
                and rows in (None, r["rows"])]
    return max(matching) if matching else None


def share_of_peak(results: dict[str, dict], rates: list[dict]) -> dict[str, dict]:
    """Per vLLM config with a prefill replay: achieved GFLOP/s in prefill, decode and overall, and
    their shares of the GEMM rates: `peak` is the dtype's best rate on this machine (any thread
    count, prefill rows); `same_threads` is at the engine's own thread count and row count."""
    shares = {}
    for key, result in results.items():
        rows = result.get("roofline") or []
        if not rows or not rates:
            continue
        dtype = result["dtype"]
        threads = len(result["engine_cpus"]) if result.get("engine_cpus") else None
        prefill_s = sum(r["prefill_seconds"] for r in rows)
        decode_s = sum(r["decode_seconds"] for r in rows)
        call_s = sum(r["call_seconds"] for r in rows)
        prefill_f = sum(r["prefill_flops"] for r in rows)
        decode_f = sum(r["decode_flops"] for r in rows)
        achieved = {
            "prefill": prefill_f / prefill_s / 1e9 if prefill_s else 0.0,
            "decode": decode_f / decode_s / 1e9 if decode_s else 0.0,
            "all": (prefill_f + decode_f) / call_s / 1e9 if call_s else 0.0,
        }
        peak = gemm_rate(rates, dtype, rows=PREFILL_ROWS)
        fp32_peak = gemm_rate(rates, "float32", rows=PREFILL_ROWS)
        same = {
            "prefill": gemm_rate(rates, dtype, threads, PREFILL_ROWS),
            "decode": gemm_rate(rates, dtype, threads, DECODE_ROWS),
            "all": gemm_rate(rates, dtype, threads, PREFILL_ROWS),
        }
        shares[key] = {
            "dtype": dtype, "engine_threads": threads, "gflops": achieved,
            "peak_gflops": peak, "fp32_peak_gflops": fp32_peak,
            "share_of_peak": {k: v / peak if peak else None for k, v in achieved.items()},
            "share_of_fp32_peak": {k: v / fp32_peak if fp32_peak else None for k, v in achieved.items()},
            "share_same_threads": {k: (v / same[k] if same[k] else None) for k, v in achieved.items()},
            "prefill_time_share": prefill_s / call_s if call_s else None,
            "cached_prompt_share": sum(r["cached_tokens"] for r in rows) / max(1, sum(r["prompt_tokens"] for r in rows)),
            # Calls whose prefill replay took as long as the whole call: the machine's noise, not
            # the engine; their decode time reads as 0 and inflates the decode rate.
            "noisy_calls": sum(1 for r in rows if r["prefill_seconds"] >= r["call_seconds"]),
        }
    return shares


def render_peak(console, shares: dict[str, dict], rates: list[dict], cpu_name: str) -> None:
    from rich.table import Table

    gemm = Table(title=f"torch GEMM GFLOP/s on the model's layer shapes ({cpu_name})")
    for column in ("dtype", "threads", "rows", "GFLOP/s"):
        gemm.add_column(column, justify="right")
    for r in rates:
        gemm.add_row(r["dtype"], str(r["threads"]), str(r["rows"]), f"{r['gflops']:.1f}")
    console.print(gemm)
    table = Table(title="engine FLOP/s as a share of the GEMM rate (peak: the dtype's best; same: the engine's threads and rows)")
    for column in ("cfg", "dtype", "thr", "prefill GF/s", "decode GF/s", "all GF/s", "prefill time",
                   "prefill %peak", "decode %peak", "all %peak", "all %fp32 peak", "prefill %same", "decode %same"):
        table.add_column(column, justify="left" if column == "cfg" else "right")

    def pct(value):
        return "-" if value is None else f"{100 * value:.0f}"

    for key, s in shares.items():
        table.add_row(key, s["dtype"], str(s["engine_threads"] or "?"), f"{s['gflops']['prefill']:.1f}",
                      f"{s['gflops']['decode']:.1f}", f"{s['gflops']['all']:.1f}", pct(s["prefill_time_share"]),
                      pct(s["share_of_peak"]["prefill"]), pct(s["share_of_peak"]["decode"]), pct(s["share_of_peak"]["all"]),
                      pct(s["share_of_fp32_peak"]["all"]), pct(s["share_same_threads"]["prefill"]),
                      pct(s["share_same_threads"]["decode"]))
    console.print(table)
    noisy = {k: s["noisy_calls"] for k, s in shares.items() if s["noisy_calls"]}
    if noisy:
        console.print(f"noisy: calls whose prefill replay took as long as the call (decode split unreliable): {noisy}")


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
    if summary.get("gemm"):
        render_peak(console, summary["share_of_peak"], summary["gemm"], summary.get("cpu_name", "this CPU"))


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
    if args.roofline and not on_gpu:
        from recsys.cpu import cpu_has_native_bf16

        summary["gemm"] = measure_gemm_rates(resolved.folder, args.gemm_seconds)
        summary["share_of_peak"] = share_of_peak(results, summary["gemm"])
        summary["native_bf16"] = cpu_has_native_bf16()
        summary["cpu_name"] = machine_info(()).get("model_name", "this CPU")
        best = max((s["share_of_peak"]["all"] or 0.0 for s in summary["share_of_peak"].values()), default=None)
        if best is not None:
            summary["goals"]["share_of_peak"] = {"value": best, "goal": SHARE_GOAL, "met": best >= SHARE_GOAL}
    payload = {
        "benchmark": "generate",
        "machine": machine_info(),
        "model": resolved.model_id,
        "model_dir": str(resolved.folder),
        "settings": {
            "requests_per_task": args.requests, "per_user": args.per_user, "dtype": args.dtype,
            "max_model_len": args.max_model_len, "gpu_memory_utilization": args.gpu_memory_utilization,
            "hf_micro_batch": args.hf_batch, "synth_news": args.news, "synth_users": args.users,
            "task_order": list(TASK_ORDER), "decoding": "greedy", "retries": 0, "max_tokens_cap": args.max_tokens_cap,
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


@dataclass
class EngineCall:
    requests: list
    results: list
    seconds: float


class RecordingBackend:
    """Passes every call through to the engine and keeps the requests, results and seconds."""

    def __init__(self, backend, max_tokens_cap: int | None = None):
        self.backend = backend
        self.name = backend.name
        self.options = backend.options
        self.dtype = backend.dtype
        self.max_tokens_cap = max_tokens_cap
        self.calls: list[EngineCall] = []

    def generate(self, requests):
        if self.max_tokens_cap is not None:
            from dataclasses import replace

            requests = [replace(r, max_tokens=min(r.max_tokens, self.max_tokens_cap)) for r in requests]
        started = time.perf_counter()
        results = self.backend.generate(requests)
        self.calls.append(EngineCall(list(requests), results, time.perf_counter() - started))
        return results

    def close(self) -> None:
        """The bench closes the engine itself, after the prefill replay."""


def prefill_replay(backend, calls: list[EngineCall], model_dir: Path) -> list[dict]:
    """Splits each engine call into prefill and decode: the same requests again from a cold
    prefix cache with max_tokens=1 time the prefill (and say which prompt tokens the batch
    shared through the cache); the rest of the call's time is decode. FLOPs are counted as
    compute_peak.py describes, from the original call's token counts."""
    from dataclasses import replace

    from genre_local.llm.compute_peak import read_model_shape

    shape = read_model_shape(model_dir)
    if shape is None:
        return []
    rows = []
    for call in calls:
        backend.reset_prefix_cache()
        started = time.perf_counter()
        firsts = backend.generate([replace(r, max_tokens=1) for r in call.requests])
        prefill_seconds = time.perf_counter() - started
        prompt = sum(r.prompt_tokens for r in call.results)
        cached = sum(f.cached_tokens or 0 for f in firsts)
        prefill_flops = sum(shape.prefill_flops(r.prompt_tokens, f.cached_tokens or 0) for r, f in zip(call.results, firsts))
        decode_flops = sum(shape.decode_flops(r.prompt_tokens, r.completion_tokens) for r in call.results)
        rows.append({
            "requests": len(call.requests), "prompt_tokens": prompt, "cached_tokens": cached,
            "completion_tokens": sum(r.completion_tokens for r in call.results),
            "call_seconds": call.seconds, "prefill_seconds": prefill_seconds,
            "decode_seconds": max(0.0, call.seconds - prefill_seconds),
            "prefill_flops": prefill_flops, "decode_flops": decode_flops,
        })
    return rows


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
    recorder = RecordingBackend(backend, args.max_tokens_cap)
    roofline = None
    try:
        run = GenerationRun(Path(args.db), settings, LazyEngine(lambda: recorder))
        stats = run.run([TASKS[name] for name in TASK_ORDER])
        if args.roofline and hasattr(backend, "reset_prefix_cache"):
            roofline = prefill_replay(backend, recorder.calls, Path(args.model_dir))
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
    Path(args.result).write_text(json.dumps({"config": config.key, "startup_seconds": startup, "tasks": tasks,
                                             "roofline": roofline}))


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
    parser.add_argument("--smoke", action="store_true", help="tiny run: transformers only, 1 request per task of at most 8 tokens, 1 thread")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--roofline", action=argparse.BooleanOptionalAction, default=True,
                        help="vLLM configs: replay each call's prompts for the prefill/decode split and the "
                             "share of this machine's measured GEMM rate (on by default; off in --smoke)")
    parser.add_argument("--max-tokens-cap", type=int, default=None,
                        help="cap every request's max tokens (the smoke run: outputs are cut short, validity is not meaningful)")
    parser.add_argument("--gemm-seconds", type=float, default=1.0, help="seconds per GEMM rate measurement")
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
        args.roofline = False
        # Eight tokens per request: enough to exercise generation and parsing end to end while
        # keeping the run short on one loaded core (a full answer is ~40-100 tokens).
        args.max_tokens_cap = args.max_tokens_cap or 8
    if args.requests < 1 or args.per_user < 1 or (args.max_tokens_cap is not None and args.max_tokens_cap < 1):
        raise SystemExit("--requests, --per-user and --max-tokens-cap must be at least 1")
    if args.child:
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
