"""The ranking models' fast evaluation: pair by pair (before) against pairs sharing their impression.

Usage: .venv/bin/python scripts/bench_ranking_eval.py [--models bst,dcn,pnn,din] [--impressions 2000]
Prints one line per model and writes bench-results/ranking_eval.json.

Both paths are recsys.evaluate._ranking_fast on the same untrained model (torch seed 1, the
[train] defaults, `original` variant) and the same dev impressions of a synthetic dataset (the
first --impressions, with the news table cut to the news they reference, as scripts/bench_train.py
does). `pairwise` gathers every pair's history and user inputs and scores eval_batch_size pairs
per forward (the path before); `shared` gathers them once per impression of each such block of
pairs (DCN and PNN: the mean history once per impression). Both first encode every news of the
cut table (the same cost in both). They run interleaved (pairwise, shared, news alone, pairwise,
...) --reps times; each line gives the median wall and CPU seconds of each, their ratio, the
ratio of the CPU seconds less the news encoding (the pairs' part), and the largest score
difference between the two paths. The dataset is generated, imported and encoded once and
cached under OUT (bench_train's cache).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from bench_train import dev_subset, prepare_data

from recsys.catalog import RANKING_MODELS
from recsys.config import TrainConfig

PATHS = ("pairwise", "shared")
NEWS = "news only"  # encode_all_news alone, the part both paths share


def time_paths(model, data, config: TrainConfig, reps: int) -> dict:
    """Median wall/CPU seconds of each path over `reps` interleaved runs, and their scores' largest gap."""
    import numpy as np
    import torch

    from recsys.evaluate import _ranking_fast, encode_all_news

    split = data.split("dev")
    rows = np.arange(len(split), dtype=np.int64)
    seconds: dict[str, list[tuple[float, float]]] = {p: [] for p in (*PATHS, NEWS)}
    scores: dict[str, list[np.ndarray]] = {}
    model.eval()
    with torch.no_grad():
        for _ in range(reps):
            for path in (*PATHS, NEWS):
                wall, cpu = time.perf_counter(), time.process_time()
                if path == NEWS:
                    encode_all_news(model, data, config.eval_batch_size, "cpu")
                else:
                    scores[path] = _ranking_fast(model, data, split, rows, config.history_len,
                                                 config.eval_batch_size, "cpu", share_users=path == "shared")
                seconds[path].append((time.perf_counter() - wall, time.process_time() - cpu))
    gap = max((float(np.abs(a - b).max()) for a, b in zip(*scores.values(), strict=True) if len(a)), default=0.0)
    medians = {p: {"wall_s": statistics.median(w for w, _ in s), "cpu_s": statistics.median(c for _, c in s),
                   "runs": [[round(w, 3), round(c, 3)] for w, c in s]} for p, s in seconds.items()}
    pairs_cpu = {p: medians[p]["cpu_s"] - medians[NEWS]["cpu_s"] for p in PATHS}  # the pairs' part
    return {**medians, "wall_ratio": medians["pairwise"]["wall_s"] / medians["shared"]["wall_s"],
            "cpu_ratio": medians["pairwise"]["cpu_s"] / medians["shared"]["cpu_s"],
            "pairs_cpu_ratio": pairs_cpu["pairwise"] / pairs_cpu["shared"] if pairs_cpu["shared"] > 0 else None,
            "max_abs_score_gap": gap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(RANKING_MODELS), help=f"a comma list of {','.join(RANKING_MODELS)}")
    parser.add_argument("--news", type=int, default=20000)
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7, help="the synthetic dataset's seed")
    parser.add_argument("--impressions", type=int, default=2000, help="dev impressions scored (0: all)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved runs of each path")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in RANKING_MODELS]
    if unknown or not models or args.reps < 1 or args.impressions < 0:
        parser.error(f"--models takes ranking models ({', '.join(RANKING_MODELS)}), --reps >= 1, --impressions >= 0"
                     + (f"; got {unknown[0]!r}" if unknown else ""))

    import numpy as np
    import torch

    from recsys.data import load_encoded
    from recsys.experiment import model_config
    from recsys.models import build_model
    from recsys.train import feature_sizes

    torch.set_num_threads(args.threads)
    config = TrainConfig()
    # prepare_data reads bench_train's flags; these are its defaults but for the size.
    data_args = argparse.Namespace(news=args.news, users=args.users, seed=args.seed, out=args.out, batch_size=64,
                                   features=config.features, title_len=config.title_len, bf16="off", threads=args.threads)
    cache, data_info = prepare_data(data_args)
    data = load_encoded(cache)
    if args.impressions:
        data = dev_subset(data, args.impressions)
    split = data.split("dev")
    counts = np.diff(split.candidate_offsets)
    results = {"machine_load": os.getloadavg(), "threads": args.threads, "data": data_info,
               "dev_impressions": len(split), "pairs": int(counts.sum()), "candidates_per_impression": float(counts.mean()),
               "eval_batch_size": config.eval_batch_size, "models": {}}
    for name in models:
        torch.manual_seed(1)
        model = build_model(name, model_config(config, use_profile=False), feature_sizes(data))
        results["models"][name] = time_paths(model, data, config, args.reps)
        r = results["models"][name]
        print(f"{name}: pairwise {r['pairwise']['wall_s']:.2f} s wall / {r['pairwise']['cpu_s']:.2f} s CPU, "
              f"shared {r['shared']['wall_s']:.2f} / {r['shared']['cpu_s']:.2f}; ratio wall {r['wall_ratio']:.2f}x, "
              f"CPU {r['cpu_ratio']:.2f}x; news alone {r[NEWS]['cpu_s']:.2f} s CPU, so the pairs' part "
              f"{r['pairs_cpu_ratio'] or float('nan'):.2f}x; max |score gap| {r['max_abs_score_gap']:.1e}", flush=True)
    results["machine_load_after"] = os.getloadavg()
    print(f"{len(split)} dev impressions, {results['pairs']} pairs ({results['candidates_per_impression']:.1f} per "
          f"impression), {args.threads} thread(s); load average {results['machine_load'][0]:.1f} before, "
          f"{results['machine_load_after'][0]:.1f} after", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ranking_eval.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
