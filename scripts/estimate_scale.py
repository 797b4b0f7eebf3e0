"""How much GENRE generation MIND needs: requests, prompt and generated tokens per task, computed
from the real prompts the planner renders, and the GPU time that follows on H100s.

The token counts are measured: a synthetic dataset of MIND-small's size is imported into a
scratch store and every request of every task is planned and tokenized with the embedded
model's tokenizer. MIND-large's figures scale the per-request means by its counts. The GPU
time is an estimate from published throughput and the H100's datasheet (see BENCHMARKS.md,
"At scale"), not a measurement.

    .venv/bin/python scripts/estimate_scale.py [--news 65238] [--users 50000] [--out bench-results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genre_local.machine import machine_info  # noqa: E402

DATASET = "scale"
MIND_LARGE = {"news": 161_013, "users": 1_000_000}  # MIND-large's published sizes
# Generated tokens per request when the model answers normally (the schema caps are the
# upper bound): a title, a profile of a few topics and states, K news of title + abstract.
TYPICAL_GENERATED = {"summarize": 20, "profile": 30, "news": 170, "chain": 170}
# Assumptions of the GPU-time estimate, each named where it is used in BENCHMARKS.md.
LLM_PARAMS = 8.0e9  # Llama-3.1-8B
H100_BF16_DENSE_FLOPS = 989e12  # NVIDIA H100 SXM datasheet, dense BF16 tensor core
PREFILL_MFU = 0.40  # share of that peak a prefill-heavy batch reaches (assumed)
DECODE_TOKENS_PER_S = 12_500  # published aggregate output rate, Llama 3.1 8B BF16, 1x H100, vLLM


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--news", type=int, default=65_238, help="news in the synthetic set (MIND-small: 65,238)")
    parser.add_argument("--users", type=int, default=50_000, help="users in the synthetic set (MIND-small: 50,000)")
    parser.add_argument("--per-user", type=int, default=2, help="synthetic news per cold user")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    return parser.parse_args()


def planned_prompts(db: Path, per_user: int) -> tuple[dict[str, list[tuple[tuple[dict, ...], int]]], dict[str, int]]:
    """task -> [(messages, max_tokens)] for every request, and the dataset's user counts."""
    from genre_local.llm.tasks import CHAIN, NEWS, PROFILE, SUMMARIZE, TaskInput
    from genre_local.pipeline.plan import PlanSettings, Planner
    from genre_local.store import open_store
    from genre_local.store.datasets import read_truth
    from genre_local.store.generations import Profile

    with open_store(db) as store:
        planner = Planner(store.conn, PlanSettings(dataset=DATASET, model_id="estimate", per_user=per_user))
        prompts = {
            task.name: [(item.request.messages, item.request.max_tokens) for item in planner.plan(store.conn, task, 1)]
            for task in (SUMMARIZE, PROFILE, NEWS)
        }
        truth = read_truth(store.conn, DATASET)
    # The chain's prompt is the generator's plus the profile; the true interests stand in for it.
    template = planner.templates[CHAIN.name]
    prompts["chain"] = []
    for user in planner.task_users(CHAIN):
        known = truth.get(user.user_id)
        profile = Profile(list(known.topics), [known.region] if known and known.region else []) if known else None
        task_input = TaskInput(user.user_id, history=planner._history(user, {}, []), profile=profile)
        prompts["chain"].append((tuple(template.render(CHAIN.slots(task_input, per_user))), CHAIN.max_tokens(per_user)))
    counts = {
        "users": len({u.user_id for u in planner.users}),
        "users_with_history": sum(1 for u in planner.users if u.history),
        "cold_users": len(planner.task_users(NEWS)),
    }
    return prompts, counts


def chat_tokens(tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> int:
    """Prompt length in tokens as the engine sees it (the model's chat template applied)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def token_stats(tokenizer, requests: list[tuple[tuple[dict, ...], int]]) -> dict[str, float]:
    lengths = [chat_tokens(tokenizer, list(messages)) for messages, _ in requests]
    system = [dict(m) for m in requests[0][0] if m["role"] == "system"]
    prefix = chat_tokens(tokenizer, system, add_generation_prompt=False) if system else 0
    return {
        "requests": len(requests),
        "prompt_tokens_mean": statistics.fmean(lengths),
        "prompt_tokens_p95": sorted(lengths)[int(0.95 * (len(lengths) - 1))],
        "prompt_tokens_total": sum(lengths),
        "shared_prefix_tokens": prefix,
        "prefix_share": prefix / statistics.fmean(lengths),
        "max_tokens": requests[0][1],
    }


def gpu_hours(prompt_tokens: float, prefix_tokens: float, generated_tokens: float) -> dict[str, float]:
    """One H100: prefill of the tokens the prefix cache cannot reuse, at PREFILL_MFU of peak,
    plus decode at the published rate; eight H100s: the same work split eight ways."""
    prefill_s = 2 * LLM_PARAMS * max(prompt_tokens - prefix_tokens, 0.0) / (H100_BF16_DENSE_FLOPS * PREFILL_MFU)
    decode_s = generated_tokens / DECODE_TOKENS_PER_S
    hours = (prefill_s + decode_s) / 3600
    return {"prefill_hours": prefill_s / 3600, "decode_hours": decode_s / 3600, "h100_hours": hours,
            "wall_hours_1_gpu": hours, "wall_hours_8_gpus": hours / 8}


def main() -> None:
    args = parse_args()
    from genre_local import quiet

    quiet.install(verbose=False)  # before the heavy imports: no conversion progress bars
    from transformers import AutoTokenizer

    from genre_local.data.mind_import import import_mind
    from genre_local.data.synth import SynthSpec, write_synthetic_mind
    from genre_local.llm.models import resolve_model
    from genre_local.store import open_store

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        write_synthetic_mind(work / "mind", SynthSpec(news=args.news, users=args.users, seed=7), force=True)
        with open_store(work / "s.duckdb") as store:
            import_mind(store, work / "mind", DATASET)
        prompts, counts = planned_prompts(work / "s.duckdb", args.per_user)
        model = resolve_model("llama", work / "models", {})
        tokenizer = AutoTokenizer.from_pretrained(str(model.folder))

    small = {task: token_stats(tokenizer, requests) for task, requests in prompts.items()}
    large_counts = {
        "summarize": MIND_LARGE["news"],
        "profile": round(counts["users_with_history"] / counts["users"] * MIND_LARGE["users"]),
        "news": round(counts["cold_users"] / counts["users"] * MIND_LARGE["users"]),
        "chain": round(counts["cold_users"] / counts["users"] * MIND_LARGE["users"]),
    }
    rows = []
    for size, requests_of in (("MIND-small", {t: s["requests"] for t, s in small.items()}), ("MIND-large", large_counts)):
        for task, stats in small.items():
            n = requests_of[task]
            prompt = stats["prompt_tokens_mean"] * n
            generated = TYPICAL_GENERATED[task] * n
            rows.append({
                "size": size, "task": task, "requests": n, "prompt_tokens": prompt,
                "prompt_tokens_mean": stats["prompt_tokens_mean"], "prefix_share": stats["prefix_share"],
                "generated_tokens": generated, "generated_cap": stats["max_tokens"] * n,
                **gpu_hours(prompt, stats["shared_prefix_tokens"] * n, generated),
            })
    result = {"machine": machine_info(), "synthetic": {"news": args.news, "users": args.users, **counts},
              "tokenizer": model.model_id, "per_task": small, "rows": rows,
              "assumptions": {"llm_params": LLM_PARAMS, "h100_bf16_dense_flops": H100_BF16_DENSE_FLOPS,
                              "prefill_mfu": PREFILL_MFU, "decode_tokens_per_s": DECODE_TOKENS_PER_S,
                              "typical_generated": TYPICAL_GENERATED}}
    (args.out / "estimate_scale.json").write_text(json.dumps(result, indent=2))
    print(f"synthetic set: {args.news:,} news, {counts['users']:,} users "
          f"({counts['users_with_history']:,} with history, {counts['cold_users']:,} cold)")
    print(f"{'size':<11}{'task':<10}{'requests':>10}{'prompt tok':>14}{'mean':>7}{'prefix':>8}"
          f"{'gen tok':>13}{'H100 h':>8}{'8xH100 h':>9}")
    for r in rows:
        print(f"{r['size']:<11}{r['task']:<10}{r['requests']:>10,}{r['prompt_tokens']:>14,.0f}{r['prompt_tokens_mean']:>7.0f}"
              f"{r['prefix_share']:>8.0%}{r['generated_tokens']:>13,.0f}{r['h100_hours']:>8.2f}{r['wall_hours_8_gpus']:>9.2f}")


if __name__ == "__main__":
    main()
