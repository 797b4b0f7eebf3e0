"""Training and evaluation throughput of every recommender on a MIND-small-sized synthetic dataset.

Usage: .venv/bin/python scripts/bench_train.py [--models all] [--steps 200] [--step-seconds 20]
Prints a table and writes bench-results/train.json.

Per model (each in its own child process, so peak memory is that model's alone):
- training: up to --steps steps or --step-seconds seconds (not whole epochs) of the trainer's own
  step (recsys.train.TrainStep under accelerate, the trainer's own optimizer from
  recsys.train.make_optimizer, the trainer's streamed batches), split into
  the time spent waiting for the next batch (data handling) and in forward, backward and the
  optimizer (the model); then a few more steps under torch.profiler for the top operators;
- evaluation: impressions/s of the fast path (each news and each user encoded once) and of the
  naive path (the whole model per impression batch). Matching models: the fast path scores the
  whole dev split, as the trainer does every epoch; ranking models, whose fast path saves the
  news encoding and per-pair history gathers (the pair scoring is the same; BENCHMARKS section 7),
  score the first --ranking-eval-impressions
  with the news table cut to the news they reference (see dev_subset). The naive path scores
  --naive-impressions of those, spread evenly (its cost is linear in impressions); the scores
  both paths gave are compared;
- peak memory: the child's peak RSS, and its growth over the RSS after loading the data.
The dataset is generated, imported and encoded once and cached under OUT (reruns time only the models).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from genre_local.machine import machine_info
from recsys.catalog import MATCHING_MODELS as MATCHING
from recsys.catalog import MODEL_NAMES as MODELS
from recsys.config import TrainConfig

DATASET = "mindsmall"


def _rss_mb() -> float:
    """Current resident memory of this process in MB (Linux /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


# -- parent: data once, one child per model ------------------------------------------------------


def prepare_data(args: argparse.Namespace) -> tuple[Path, dict]:
    """The encoded `original` variant of a synthetic dataset, from the cache when present."""
    from genre_local.data.mind_import import import_mind
    from genre_local.data.synth import SynthSpec, write_synthetic_mind
    from genre_local.store import open_store
    from genre_local.store.variants import fetch_encoded
    from recsys.variants import VariantSpec

    timings = {}
    folder = args.out / f"synth-{args.news}n-{args.users}u-s{args.seed}"
    if not (folder / "train" / "behaviors.tsv").exists():
        started = time.perf_counter()
        write_synthetic_mind(folder, SynthSpec(news=args.news, users=args.users, seed=args.seed), force=True)
        timings["synth_seconds"] = round(time.perf_counter() - started, 1)
    work = args.out / "train"
    work.mkdir(parents=True, exist_ok=True)
    db = work / f"store-{folder.name}.duckdb"
    with open_store(db) as store:
        if DATASET not in store.dataset_names():
            started = time.perf_counter()
            import_mind(store, folder, DATASET)
            timings["import_seconds"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        cfg = bench_config(args)
        data, path = fetch_encoded(store.conn, DATASET, VariantSpec(), cfg.feature_names,
                                   cfg.title_len, cfg.abstract_len, None, work / "cache")
        timings["encode_or_load_seconds"] = round(time.perf_counter() - started, 1)
    sizes = {
        "news": len(data.news_ids),
        "impressions": {name: len(split) for name, split in data.splits.items()},
        "train_clicks": int((data.split("train").labels > 0).sum()),
        "train_pairs": int((data.split("train").labels >= 0).sum()),
        "users": data.num_users - 1,
    }
    return Path(path), {**timings, "sizes": sizes}


def run_child(args: argparse.Namespace, model: str, cache: Path) -> dict:
    result_file = args.out / "train" / f"model-{model}.json"
    result_file.unlink(missing_ok=True)
    log = args.out / "train" / f"model-{model}.log"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", model, "--cache", str(cache),
        "--result", str(result_file), "--steps", str(args.steps), "--step-seconds", str(args.step_seconds),
        "--batch-size", str(args.batch_size), "--eval-impressions", str(args.eval_impressions),
        "--ranking-eval-impressions", str(args.ranking_eval_impressions),
        "--naive-impressions", str(args.naive_impressions), "--features", args.features,
        "--title-len", str(args.title_len), "--bf16", args.bf16, "--encoder", str(args.encoder or ""),
        "--threads", str(args.threads), "--warmup", str(args.warmup), "--profile-steps", str(args.profile_steps),
        "--plmnr-history", args.plmnr_history,
    ]
    print(f"[{model}] ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with log.open("w") as handle:
        try:
            code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=args.child_timeout).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    if code != 0 or not result_file.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        print(f"[{model}] FAILED ({code}); last lines of {log}:\n{tail}", file=sys.stderr, flush=True)
        return {"model": model, "error": f"exit {code}; see {log}"}
    result = json.loads(result_file.read_text())
    print(f"[{model}] done in {time.perf_counter() - started:.0f}s: {result['train']['samples_per_s']:,.0f} samples/s, "
          f"eval fast {result['eval']['fast_impressions_per_s']:,.0f} imp/s", file=sys.stderr, flush=True)
    return result


def render(results: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("model", "kind", "trainable", "steps", "samples/s", "data %", "fwd %", "bwd+opt %",
                   "eval fast imp/s", "naive imp/s", "fast/naive", "max |Δscore|", "peak RSS MB", "+MB", "top op (profiler)"):
        table.add_column(column, justify="left" if column in ("model", "kind") else "right")
    for r in results:
        if "error" in r:
            table.add_row(r["model"], "FAILED", r["error"])
            continue
        t, e = r["train"], r["eval"]
        history = r.get("plmnr_history")
        table.add_row(
            r["model"] + (f" ({history})" if history not in (None, "exact") else ""), r["kind"], f"{r['parameters'] / 1e6:.2f}M", str(t["steps"]), f"{t['samples_per_s']:,.0f}",
            f"{100 * t['data_share']:.1f}", f"{100 * t['forward_share']:.1f}", f"{100 * t['backward_share']:.1f}",
            f"{e['fast_impressions_per_s']:,.0f}", f"{e['naive_impressions_per_s']:,.0f}", f"{e['speedup']:.1f}",
            f"{e['max_abs_diff']:.1e}", f"{r['memory']['peak_rss_mb']:,.0f}", f"{r['memory']['model_growth_mb']:,.0f}",
            _top_op(t.get("profile_top_ops") or []),
        )
    # Wide enough for the table when stdout is a file or pipe (Rich assumes 80 columns there).
    Console(width=None if sys.stdout.isatty() else 170).print(table)


def _top_op(ops: list[dict]) -> str:
    return f"{ops[0]['op'].removeprefix('aten::')} {100 * ops[0]['self_cpu_share']:.0f}%" if ops else "-"


def parent(args: argparse.Namespace) -> None:
    models = MODELS if args.models == "all" else tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise SystemExit(f"--models: unknown {unknown or '(empty)'}; use all or a subset of {','.join(MODELS)}")
    try:
        bench_config(args)
    except ValueError as exc:  # recsys.errors.ConfigError: a bad --features, --title-len, --batch-size
        raise SystemExit(f"bench_train: {exc}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    cache, data_info = prepare_data(args)
    print(f"data ready in {time.perf_counter() - started:.0f}s: {data_info}", file=sys.stderr, flush=True)
    if "dire" in models and args.encoder is None:  # DIRE reads news with an LLM: the embedded SmolLM2
        from genre_local.llm.models import prepare_embedded

        args.encoder = prepare_embedded(args.out / "models" / "smollm2")
    results = [run_child(args, model, cache) for model in models]
    goals = {}
    for r in results:
        if "error" not in r and r["model"] in MATCHING:
            goals[f"{r['model']}_fast_eval_speedup"] = {"value": r["eval"]["speedup"], "goal": 5.0,
                                                      "met": r["eval"]["speedup"] >= 5.0}
    payload = {
        "benchmark": "train",
        "machine": machine_info(),
        "data": data_info,
        "settings": {
            "steps": args.steps, "step_seconds": args.step_seconds, "warmup_steps": args.warmup,
            "batch_size": args.batch_size, "negatives": bench_config(args).negatives,
            "history_len": bench_config(args).history_len, "title_len": args.title_len,
            "features": args.features, "eval_impressions": args.eval_impressions,
            "naive_impressions": args.naive_impressions, "synth_news": args.news, "synth_users": args.users,
        },
        "results": results,
        "goals": goals,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    sizes = data_info["sizes"]
    render(results, f"training and evaluation, synthetic {sizes['news']:,} news / {sizes['impressions'].get('train', 0):,} "
                    f"train impressions, batch {args.batch_size}")
    for name, goal in goals.items():
        print(f"goal {name}: {goal['value']:.1f} (goal >= 5) {'met' if goal['met'] else 'NOT MET'}")
    name = "train-smoke.json" if args.smoke else "train.json"
    (args.out / name).write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps({"benchmark": "train", "goals": goals, "total_seconds": payload["total_seconds"]}))
    if any("error" in r for r in results):
        raise SystemExit(1)


# -- child: one model ----------------------------------------------------------------------------


def train_steps(model, data, args: argparse.Namespace) -> dict:
    """The trainer's step on its own batches, timed per phase; warm-up steps are not counted."""
    import torch

    from recsys.data import BatchStream, TrainSamples, epoch_batches
    from recsys.train import TrainStep, make_accelerator, make_optimizer

    from recsys.cpu import use_bf16

    cfg = bench_config(args)
    accelerator = make_accelerator()
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.optimizer, cfg.decay_scope)  # the trainer's own (fused, trainable only)
    step_module, optimizer = accelerator.prepare(TrainStep(model), optimizer)
    bf16 = use_bf16(cfg.bf16, accelerator.device.type, model=model.name)  # the trainer's autocast choice
    samples = TrainSamples(data, data.split("train"), model.kind, cfg.negatives, cfg.history_len)
    batches = epoch_batches(len(samples), args.batch_size, 1, 0)
    loader = torch.utils.data.DataLoader(BatchStream(samples, batches, 1, 0), batch_size=None, num_workers=0)
    step_module.train()
    phases = {"data": 0.0, "forward": 0.0, "backward": 0.0}
    seen = steps = 0
    iterator = iter(loader)
    total_steps = args.warmup + args.steps
    measured_start = None
    for index in range(total_steps):
        t0 = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            break
        batch = batch.to(accelerator.device)
        t1 = time.perf_counter()
        with torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = step_module(batch)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        t3 = time.perf_counter()
        if index < args.warmup:
            continue
        if measured_start is None:
            measured_start = t0
        phases["data"] += t1 - t0
        phases["forward"] += t2 - t1
        phases["backward"] += t3 - t2
        seen += len(batch)
        steps += 1
        if t3 - measured_start >= args.step_seconds:
            break
    seconds = sum(phases.values())
    profile = profile_steps(step_module, optimizer, accelerator, iterator, args.profile_steps)
    return {
        "steps": steps,
        "samples": seen,
        "seconds": round(seconds, 3),
        "samples_per_s": seen / seconds if seconds else 0.0,
        "step_ms": 1000 * seconds / steps if steps else 0.0,
        "data_share": phases["data"] / seconds if seconds else 0.0,
        "forward_share": phases["forward"] / seconds if seconds else 0.0,
        "backward_share": phases["backward"] / seconds if seconds else 0.0,
        "final_loss": float(loss.detach()) if steps else None,
        "bf16": bf16,
        "epoch_steps": len(batches),
        "profile_top_ops": profile,
    }


def profile_steps(step_module, optimizer, accelerator, iterator, steps: int) -> list[dict]:
    """torch.profiler over a few more steps: the operators that take the step's CPU time."""
    if steps <= 0:
        return []
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with record_function("data"):
                try:
                    batch = next(iterator).to(accelerator.device)
                except StopIteration:
                    break
            loss = step_module(batch)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
    events = [e for e in prof.key_averages() if e.key != "data"]
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) or 1.0
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    return [{"op": e.key, "self_cpu_share": round(e.self_cpu_time_total / total, 4), "calls": e.count} for e in top]


def dev_subset(data, impressions: int):
    """The dataset with its dev split cut to the first `impressions` rows and its news table cut to
    the news those rows reference (re-indexed), as if the dev split were that small. The fast
    path encodes every news of the table once per evaluation, so without the cut a small sample
    of impressions would pay for encoding all of MIND-small's news."""
    import dataclasses

    import numpy as np
    import torch

    split = data.split("dev")
    k = min(impressions, len(split))
    h_end, c_end = int(split.history_offsets[k]), int(split.candidate_offsets[k])
    used = np.unique(np.concatenate([[0], split.history[:h_end], split.candidates[:c_end]]))
    remap = np.zeros(len(data.news), dtype=np.int64)
    remap[used] = np.arange(len(used))
    sub = dataclasses.replace(
        split,
        impression_id=split.impression_id[:k], user_index=split.user_index[:k],
        profile_index=split.profile_index[:k], history=remap[split.history[:h_end]],
        history_offsets=split.history_offsets[: k + 1], original_history_len=split.original_history_len[:k],
        candidates=remap[split.candidates[:c_end]], candidate_offsets=split.candidate_offsets[: k + 1],
        labels=split.labels[:c_end],
    )
    return dataclasses.replace(
        data, news=data.news.select(torch.from_numpy(used)), news_ids=[data.news_ids[i - 1] for i in used[1:]],
        splits={"dev": sub},
    )


def eval_paths(model, data, args: argparse.Namespace) -> dict:
    """Fast and naive scoring of the same dev impressions (naive: the first few of them only)."""
    import numpy as np

    from recsys.evaluate import score_split

    limit = args.eval_impressions if model.kind == "matching" else args.ranking_eval_impressions
    if limit > 0:
        data = dev_subset(data, limit)
    split = data.split("dev")
    fast_rows = np.arange(len(split), dtype=np.int64)
    # Spread over the split: the first rows of a day are not typical of the whole.
    naive_rows = np.unique(np.linspace(0, len(split) - 1, min(args.naive_impressions, len(split))).astype(np.int64))
    cfg = bench_config(args)
    fast = score_split(model, data, split, cfg.history_len, cfg.eval_batch_size, rows=fast_rows, fast=True)
    naive = score_split(model, data, split, cfg.history_len, cfg.eval_batch_size, rows=naive_rows, fast=False)
    fast_by_row = dict(zip(fast.rows.tolist(), fast.scores))
    diff = max((float(np.max(np.abs(fast_by_row[r] - b))) for r, b in zip(naive.rows.tolist(), naive.scores) if len(b)),
               default=0.0)
    return {
        "news_encoded": len(data.news) - 1,
        "fast_impressions": len(fast_rows),
        "fast_seconds": round(fast.seconds, 3),
        "fast_impressions_per_s": fast.impressions_per_s,
        "naive_impressions": len(naive_rows),
        "naive_seconds": round(naive.seconds, 3),
        "naive_impressions_per_s": naive.impressions_per_s,
        "speedup": fast.impressions_per_s / naive.impressions_per_s if naive.impressions_per_s else 0.0,
        "max_abs_diff": diff,
    }


def bench_config(args: argparse.Namespace) -> TrainConfig:
    """The [train] defaults with the benchmark's flags: the same checks as `genre-local train`."""
    return TrainConfig(batch_size=args.batch_size, features=args.features, title_len=args.title_len, bf16=args.bf16,
                       threads=args.threads, plmnr_history=args.plmnr_history)


def child(args: argparse.Namespace) -> None:
    import dataclasses

    import torch

    from recsys.data import load_encoded
    from recsys.experiment import model_config
    from recsys.models import build_model
    from recsys.train import feature_sizes

    from recsys.cpu import auto_threads, machine_load

    # the trainer's thread choice ([train] threads, 0 = recsys.cpu.auto_threads)
    torch.set_num_threads(args.threads or auto_threads(os.cpu_count() or 1, machine_load()))
    rss_start = _rss_mb()
    data = load_encoded(Path(args.cache))
    rss_data = _rss_mb()
    torch.manual_seed(1)
    config = dataclasses.replace(model_config(bench_config(args), use_profile=False), encoder=args.encoder or None)
    model = build_model(args.child, config, feature_sizes(data))
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # PLMNR/DIRE: the frozen layers' states of the whole catalogue, once, as the trainer does
    # before its first step (timed apart from the steps; kept under OUT for reruns)
    started = time.perf_counter()
    model.prepare_news(data.news, Path(args.cache).parent / "layers")
    prepare_seconds = time.perf_counter() - started
    # PLMNR cached/states: the history table the trainer builds at each epoch start (timed apart)
    started = time.perf_counter()
    model.train()
    table = model.start_epoch() is not None
    table_seconds = time.perf_counter() - started
    train = train_steps(model, data, args) | {"prepare_news_seconds": round(prepare_seconds, 2),
                                               "epoch_table_seconds": round(table_seconds, 2) if table else None}
    evaluation = eval_paths(model, data, args)
    Path(args.result).write_text(json.dumps({
        "model": args.child,
        "plmnr_history": config.plmnr_history if args.child == "plmnr" else None,
        "kind": model.kind,
        "parameters": parameters,
        "train": train,
        "eval": evaluation,
        "memory": {
            "rss_before_data_mb": round(rss_start),
            "rss_with_data_mb": round(rss_data),
            "peak_rss_mb": round(_peak_rss_mb()),
            "model_growth_mb": round(_peak_rss_mb() - rss_data),
        },
        "torch_threads": torch.get_num_threads(),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="all", help=f"all or a comma list of {','.join(MODELS)}")
    parser.add_argument("--news", type=int, default=65000)
    parser.add_argument("--users", type=int, default=50000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200, help="measured training steps per model (after warm-up)")
    parser.add_argument("--step-seconds", type=float, default=20.0, help="stop training a model after this many seconds")
    parser.add_argument("--warmup", type=int, default=1, help="training steps not counted")
    parser.add_argument("--profile-steps", type=int, default=2, help="extra steps under torch.profiler (top operators)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--eval-impressions", type=int, default=0,
                        help="dev impressions evaluated for matching models (with only the news they reference); 0 = the whole dev split")
    parser.add_argument("--ranking-eval-impressions", type=int, default=1000,
                        help="the same for ranking models, whose fast path saves less than the matching models'")
    parser.add_argument("--naive-impressions", type=int, default=500, help="of those, also scored by the naive path (spread evenly)")
    parser.add_argument("--features", default="title,category")
    parser.add_argument("--plmnr-history", default="exact", help="[train] plmnr_history of PLMNR: exact | no-grad | cached | states")
    parser.add_argument("--bf16", default="auto", choices=("auto", "on", "off"), help="[train] bf16: autocast of the forward")
    parser.add_argument("--threads", type=int, default=0, help="[train] threads (0: chosen from cores and load)")
    parser.add_argument("--title-len", type=int, default=30)
    parser.add_argument("--child-timeout", type=int, default=600)
    parser.add_argument("--encoder", default=None,
                        help="DIRE's LLaMA-family folder (default: the embedded SmolLM2, prepared under OUT)")
    parser.add_argument("--smoke", action="store_true", help="tiny run: small dataset, few steps, two models")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--child", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.news, args.users, args.steps, args.step_seconds, args.warmup, args.profile_steps = 300, 60, 3, 10.0, 1, 1
        args.eval_impressions, args.ranking_eval_impressions, args.naive_impressions = 20, 20, 10
        if args.models == "all":
            args.models = "nrms,din"
    if args.child:
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
