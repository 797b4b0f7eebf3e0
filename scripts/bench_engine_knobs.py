"""vLLM CPU knobs side by side inside ONE process: scheduler batch, torch threads and dtype.

Usage: python scripts/bench_engine_knobs.py --db STORE --dataset NAME [--summarize 48 --profile 16 --news 8]
       [--budget 430] [--order 1x32:float32,1x32:bfloat16,...] [--out bench-results/engine_knobs.json]

On a shared 2-core machine an engine start costs 25 s to 2.5 minutes of wall time depending on
the neighbours, so comparing configurations across engine starts mostly measures the load. This
script starts one engine in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0, so the scheduler is
reachable) and switches two knobs between phases without restarting it:
  - threads: torch/OpenMP threads of the model (1 = vLLM's default on a 2-core x86 box, which
    binds the model to one core and keeps the other for its front end; 2 = both cores);
  - seqs: the scheduler's cap on running sequences (32 = our CPU default max_num_seqs; 128);
  - dtype (optional `:DTYPE` after a phase): one engine per dtype named, all started first in
    this process, so float32 and bfloat16 alternate without an engine start between them
    (without it: `auto`, what `generate` would pick).
Every phase sends the same requests (the first N of each task, planned from the store exactly as
`generate` plans them), from a cold prefix cache, greedy; phases run ABCD DCBA so a drifting load
hits every configuration alike; each row records wall and process CPU seconds (user + system of
every thread), valid outputs and the 1-minute load. Needs the store's dataset imported and the
model prepared (`models prepare llama`); run it under the engine lock. Relies on vLLM 0.32's
in-process engine layout (engine_core.engine_core.scheduler.max_num_active_reqs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

ORDER = ((1, 32), (1, 128), (2, 32), (2, 128), (2, 128), (2, 32), (1, 128), (1, 32))


def parse_phases(order: str) -> list[tuple[int, int, str]]:
    """THREADSxSEQS[:DTYPE],... -> (threads, seqs, dtype) per phase; no dtype means `auto`."""
    phases = []
    for phase in order.split(","):
        knobs, _, dtype = phase.strip().partition(":")
        threads, seqs = (int(value) for value in knobs.split("x"))
        phases.append((threads, seqs, dtype or "auto"))
    return phases


def process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--summarize", type=int, default=48)
    parser.add_argument("--profile", type=int, default=16)
    parser.add_argument("--news", type=int, default=8)
    parser.add_argument("--budget", type=float, default=430.0, help="Start no phase after this many seconds.")
    parser.add_argument("--order", default=",".join(f"{t}x{q}" for t, q in ORDER),
                        help="Phases as THREADSxSEQS[:DTYPE], comma-separated [default: ABCD DCBA over 1|2 x 32|128].")
    parser.add_argument("--out", type=Path, default=Path("bench-results/engine_knobs.json"))
    args = parser.parse_args()
    order = parse_phases(args.order)
    # Before vLLM is imported: it reads these once. The KV cache gets 3 GiB, what our CPU sizing
    # gives 32 full sequences of 2,048 tokens, for every phase (per engine: two dtypes take 6 GiB).
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "3")
    import torch

    from genre_local.llm.backend import EngineOptions
    from genre_local.llm.models import resolve_model
    from genre_local.llm.prompt_sets import resolve_prompt_set
    from genre_local.pipeline.plan import Planner, PlanSettings
    from genre_local.store import open_store

    started, counts = time.perf_counter(), {"summarize": args.summarize, "profile": args.profile, "news": args.news}
    model = resolve_model("llama", args.db.resolve().parent / "models", {}, prepare_missing=False)
    prompt_set = resolve_prompt_set(None, "llama")
    settings = PlanSettings(dataset=args.dataset, model_id=model.model_id, temperature=0.0, top_p=1.0, seed=0, per_user=2,
                            history_items=20, limit=None, constrained=True, prompt_set=prompt_set.name, context_tokens=2048)
    items = []
    with open_store(args.db) as store:
        planner = Planner(store.conn, settings)
        for task in prompt_set.resolve_tasks("all", "generate"):
            if task.name in counts:
                items += planner.plan(store.conn, task, 1)[: counts[task.name]]
    from genre_local.llm.vllm_backend import VllmBackend

    set_threads = torch.set_num_threads  # saved before vLLM's CPU worker turns it into a no-op
    wall, cpu = time.perf_counter(), process_cpu_seconds()
    engines, start = {}, {}
    for dtype in dict.fromkeys(dtype for _, _, dtype in order):
        engines[dtype] = VllmBackend(EngineOptions(model_dir=model.folder, dtype=dtype,
                                                   max_num_seqs=max(seqs for _, seqs, _ in order)))
        start[dtype] = {"wall": round(time.perf_counter() - wall, 1), "cpu": round(process_cpu_seconds() - cpu, 1),
                        "load": os.getloadavg()[0]}
        wall, cpu = time.perf_counter(), process_cpu_seconds()
    print(f"planned {len(items)} requests {counts}; in-process engine start {start}", flush=True)
    requests = [item.request for item in items]
    rows, first_texts = [], None
    for threads, seqs, dtype in order:
        if time.perf_counter() - started > args.budget:
            print("budget reached; later phases skipped", flush=True)
            break
        backend = engines[dtype]
        set_threads(threads)
        backend._llm.llm_engine.engine_core.engine_core.scheduler.max_num_active_reqs = seqs
        backend.reset_prefix_cache()
        load, wall, cpu = os.getloadavg()[0], time.perf_counter(), process_cpu_seconds()
        results = backend.generate(requests)
        texts = [r.text for r in results]
        first_texts = first_texts or texts
        row = {"threads": threads, "seqs": seqs, "dtype": dtype, "wall_s": round(time.perf_counter() - wall, 1),
               "cpu_s": round(process_cpu_seconds() - cpu, 1), "requests": len(results),
               "valid": sum(1 for item, result in zip(items, results)
                            if item.task.parse(result.text, item.per_request, item.history_titles).valid),
               "completion_tokens": sum(r.completion_tokens for r in results),
               "same_texts_as_first_phase": sum(a == b for a, b in zip(texts, first_texts)),
               "load_start": round(load, 1), "load_end": round(os.getloadavg()[0], 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    for backend in engines.values():
        backend.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"engine_start": start, "phases": rows}, indent=1))


if __name__ == "__main__":
    main()
