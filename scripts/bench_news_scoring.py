"""Per-news topic scoring against decoded labels, on one engine (BENCHMARKS.md section 8c).

    flock /tmp/genre-engine.lock python scripts/bench_news_scoring.py run DB DATASET \
        --users 250 --chunk 125 --budget 420 --steps label,logprobs --out SCORES.jsonl
    python scripts/bench_news_scoring.py report DB DATASET --users 250 --out SCORES.jsonl

`run`: for the news in the first `chunk` users' label windows (the news `--profile-method label`
would label), then the next chunk's new news, the `--steps` on the same engine, their order
alternating by chunk (A B, B A): `label` decodes the label (exactly the `label` task's request:
compact prompt, constrained, greedy); `logprobs` scores the 19 topics by the model's likelihood
after the same prompt's answer start `{"topic": "` (one next-token query per news with the
default `--scoring first-token`, 13 with `exact`). Each step appends one JSON line per news to
--out (its label, or its 19 log-probabilities), so a run cut short keeps the steps it finished,
and one line with its engine wall and CPU seconds (this process and its children, e.g. vLLM's
engine core) to --out's `.steps` file. Nothing is written to the store. The content-free
inputs (the prompt with a placeholder headline) are scored once. A chunk is not started once
--budget seconds have passed: call again to go on.

`report`: fidelity with chance of user profiles aggregated from those lines by several rules,
over the users whose window news all have scores (labels: this script's, else the store's
`label` rows).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from genre_local.data.taxonomy import PROFILE_TOPICS
from genre_local.llm import parsing
from genre_local.llm.backend import EngineOptions, ScoreRequest, open_backend
from genre_local.llm.models import EMBEDDED_ALIAS, resolve_model
from genre_local.llm.news_scoring import argmax_counts, calibrate, mean_distribution, normalised, soft_counts
from genre_local.llm.prompt_sets import prompt_set_named
from genre_local.llm.tasks import label_slots
from genre_local.pipeline.fidelity import format_fidelity, profile_fidelity
from genre_local.pipeline.plan import Planner, PlanSettings
from genre_local.store import datasets, generations, open_store

ANSWER_PREFIX = '{"topic": "'
# Zhao et al. 2021's content-free inputs, as the headline.
CONTENT_FREE = ("N/A", "[MASK]", "")


def _plan(db: Path, dataset: str, model_id: str, users: int):
    """The label task's work items (one per news, in first-click order) and the first `users`
    users' label windows."""
    label_profile = prompt_set_named("compact").resolve_tasks("profile", "label")[0]
    with open_store(db) as store:
        planner = Planner(store.conn, PlanSettings(dataset=dataset, model_id=model_id, limit=users))
        people = planner.task_users(label_profile)
        items = planner.plan(store.conn, label_profile.requires, 1, only_users={u.user_id for u in people})
        windows = {u.user_id: planner.label_window(u) for u in people}
        template = planner.templates["label"]
    return items, [u.user_id for u in people], windows, template


def _candidates(backend, scoring: str) -> tuple[str, ...]:
    """What each topic is scored by: all its tokens (`exact`, 13 next-token queries per news),
    or its first token only (`first-token`: the 19 first tokens are distinct in SmolLM2's
    tokenizer, so one query per news scores all 19)."""
    if scoring == "exact":
        return PROFILE_TOPICS
    tokenizer = backend._llm.get_tokenizer()
    firsts = [tokenizer.decode([tokenizer.encode(t, add_special_tokens=False)[0]]) for t in PROFILE_TOPICS]
    if len(set(firsts)) != len(firsts) or any(len(tokenizer.encode(f, add_special_tokens=False)) != 1 for f in firsts):
        raise SystemExit("the topics' first tokens are not distinct single tokens in this tokenizer: use --scoring exact")
    return tuple(firsts)


def _cpu_seconds() -> float:
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def _read_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def run(args: argparse.Namespace, model_id: str, folder: Path) -> None:
    begin = time.perf_counter()
    items, users, windows, template = _plan(args.db, args.dataset, model_id, args.users)
    by_nid = {item.input_id: item for item in items}
    lines = _read_lines(args.out)
    done = {step: {x["nid"] for x in lines if step in x} for step in args.steps}
    steps = args.out.with_suffix(".steps")
    backend = None
    try:
        for chunk_index, limit in enumerate(range(args.chunk, args.users + args.chunk, args.chunk)):
            wanted = list(dict.fromkeys(n for u in users[:limit] for n in windows[u] if n in by_nid))
            todo = {step: [n for n in wanted if n not in done[step]] for step in done}
            if not any(todo.values()):
                continue
            if time.perf_counter() - begin > args.budget:
                print("budget spent: call again to go on", flush=True)
                return
            if backend is None:
                start = time.perf_counter()
                backend = open_backend("vllm", EngineOptions(model_dir=folder))
                print(json.dumps({"startup_s": round(time.perf_counter() - start, 1)}), flush=True)
                candidates = _candidates(backend, args.scoring)
                if "logprobs" in args.steps and not any(x["nid"] == "__content_free__" for x in lines):
                    score_requests = [ScoreRequest(tuple(template.render(label_slots(t))), ANSWER_PREFIX, candidates)
                                      for t in CONTENT_FREE]
                    cf = backend.score(score_requests)
                    with args.out.open("a") as out:
                        out.write(json.dumps({"nid": "__content_free__", "titles": list(CONTENT_FREE), "scoring": args.scoring,
                                              "cf_logprobs": [list(r.logprobs) for r in cf]}) + "\n")
            # Alternate the steps' order by chunk (A B, B A): neither always runs on a warmer engine.
            order = args.steps if chunk_index % 2 == 0 else args.steps[::-1]
            for step in order:
                news = todo[step]
                if not news:
                    continue
                wall, cpu = time.perf_counter(), _cpu_seconds()
                if step == "label":
                    results = backend.generate([by_nid[n].request for n in news])
                    values = [parsing.parse_label(r.text).value for r in results]
                    tokens = (sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results))
                else:
                    scored = backend.score([ScoreRequest(by_nid[n].request.messages, ANSWER_PREFIX, candidates)
                                            for n in news])
                    values = [list(r.logprobs) for r in scored]
                    tokens = (sum(r.prompt_tokens for r in scored), sum(r.scored_tokens for r in scored))
                line = {"step": step, "limit": limit, "news": len(news), "engine_s": round(time.perf_counter() - wall, 2),
                        "cpu_s": round(_cpu_seconds() - cpu, 2), "prompt_tokens": tokens[0], "other_tokens": tokens[1],
                        "load": round(os.getloadavg()[0], 2), "scoring": args.scoring}
                print(json.dumps(line), flush=True)
                with steps.open("a") as log:
                    log.write(json.dumps(line) + "\n")
                with args.out.open("a") as out:
                    for n, value in zip(news, values):
                        out.write(json.dumps({"nid": n, step: value}) + "\n")
                done[step].update(news)
    finally:
        if backend is not None:
            backend.close()


# -- report --------------------------------------------------------------------------------------


def _ranked(labels: Sequence[str], weights: Sequence[float], k: int) -> list[str]:
    order = sorted(range(len(labels)), key=lambda i: (-weights[i], i))
    return [labels[i] for i in order[:k]]


def _count_ranked(values: Sequence[str], score: Callable[[str, int, int], float], k: int) -> list[str]:
    """The labelling profiler's ranking (count, ties to the latest click) under any score."""
    count = Counter(values)
    last = {v: i for i, v in enumerate(values)}
    order = {t: i for i, t in enumerate(PROFILE_TOPICS)}
    return sorted(count, key=lambda v: (-score(v, count[v], len(values)), -count[v], -last[v], order.get(v, 99), v))[:k]


def report(args: argparse.Namespace, model_id: str) -> None:
    items, users, windows, _ = _plan(args.db, args.dataset, model_id, args.users)
    lines: dict[str, dict] = {}
    for x in _read_lines(args.out):
        lines.setdefault(x["nid"], {}).update(x)
    cf_line = lines.pop("__content_free__", None)
    with open_store(args.db) as store:
        truth = datasets.read_truth(store.conn, args.dataset)
        # Labels decoded by this script, else those the `label` task stored (same prompt, engine settings).
        stored = generations.news_labels_up_to(store.conn, args.dataset, 1, model_id, "compact")
    for nid, (topic, state, _) in stored.items():
        if nid in lines and "label" not in lines[nid]:
            lines[nid]["label"] = {"topic": topic, "state": state}
    covered = [u for u in users if windows[u] and all("logprobs" in lines.get(n, {}) for n in windows[u])]
    news = list(dict.fromkeys(n for u in covered for n in windows[u]))
    raw = {n: normalised(lines[n]["logprobs"]) for n in news}
    batch_prior = mean_distribution(list(raw.values()))
    cf_prior = mean_distribution([normalised(r) for r in cf_line["cf_logprobs"]]) if cf_line else None
    width = len(PROFILE_TOPICS)
    views = {"raw": raw, "batch-calibrated": {n: calibrate(raw[n], batch_prior) for n in news}}
    if cf_prior is not None:
        views["content-free-calibrated"] = {n: calibrate(raw[n], cf_prior) for n in news}
    labels = {n: lines[n]["label"] for n in news if lines[n].get("label")}
    states = {u: [labels[n]["state"] for n in windows[u] if n in labels and labels[n]["state"]] for u in covered}
    state_count = {u: _count_ranked(states[u], lambda v, c, m: c, 1) for u in covered}
    print(f"{args.dataset}: {len(covered)} of {len(users)} users covered, {len(news)} news scored, {len(labels)} labels")
    for name, prior in (("batch prior", batch_prior), ("content-free prior", cf_prior)):
        if prior:
            top = sorted(zip(PROFILE_TOPICS, prior), key=lambda x: -x[1])[:5]
            print(f"  {name}: " + ", ".join(f"{t} {p:.3f}" for t, p in top))
    for view, dists in views.items():
        best = Counter(PROFILE_TOPICS[max(range(width), key=lambda i: (d[i], -i))] for d in dists.values())
        print(f"  {view} argmax per news: {best.most_common(5)}")
    profiles: dict[str, dict[str, tuple[list[str], list[str]]]] = {}
    for view, dists in views.items():
        for agg, fn in (("soft", soft_counts), ("argmax", argmax_counts)):
            profiles[f"{view} {agg}"] = {
                u: (_ranked(PROFILE_TOPICS, fn([dists[n] for n in windows[u]], width), args.max_topics), state_count[u])
                for u in covered}
    # The decoded labels, aggregated by count (shipped) and by lift (8b's pre-declared rule).
    n_topic = Counter(labels[n]["topic"] for n in labels)
    total = sum(n_topic.values())
    lift = lambda v, c, m: c / ((n_topic[v] + 1) / (total + width))  # noqa: E731
    for name, score in (("labels count", lambda v, c, m: c), ("labels lift add-one", lift)):
        profiles[name] = {u: (_count_ranked([labels[n]["topic"] for n in windows[u] if n in labels], score, args.max_topics),
                              state_count[u]) for u in covered}
    for name, profs in profiles.items():
        f = profile_fidelity(profs, truth)
        if f is not None:
            print(f"  {name:34s} {format_fidelity(f)}; p3 ratio {f.ratio_to_chance().precision_at_3:.4f}")
    # States by excess count (issue 9 part 6 idea (c)) beside count.
    n_state = Counter(labels[n]["state"] for n in labels if labels[n]["state"])
    m = sum(n_state.values())
    excess = lambda v, c, k: c - k * n_state[v] / m  # noqa: E731
    for name, rule in (("count", lambda v, c, k: c), ("excess count", excess)):
        profs = {u: (profiles["labels count"][u][0], _count_ranked(states[u], rule, 1)) for u in covered}
        f = profile_fidelity(profs, truth)
        if f is not None:
            print(f"  states by {name}: region accuracy {f.region_accuracy:.3f} (chance {f.chance.region_accuracy:.3f})")
    if args.compare:
        _bootstrap(profiles, truth, args.compare.split(","))


def _bootstrap(profiles: dict, truth: dict, names: Sequence[str]) -> None:
    """Paired bootstrap over users (seed 0, 2000 resamples) of precision@3: names[0] - names[1],
    and names[0]'s own 95% interval as a ratio to its chance."""
    def p3(profs):
        return {u: len([t for t in profs[u][0][:3] if t in set(truth[u][0])]) / 3 for u in profs if u in truth}
    a, b = p3(profiles[names[0]]), p3(profiles[names[1]])
    us = sorted(a)
    rng = random.Random(0)
    diffs, levels = [], []
    for _ in range(2000):
        sample = [rng.choice(us) for _ in us]
        diffs.append(sum(a[u] - b[u] for u in sample) / len(sample))
        levels.append(sum(a[u] for u in sample) / len(sample))
    diffs.sort()
    levels.sort()
    chance = profile_fidelity(profiles[names[0]], truth).chance.precision_at_3
    print(f"  {names[0]} - {names[1]}: p3 {sum(a[u] - b[u] for u in us) / len(us):+.4f} "
          f"[{diffs[50]:+.4f}, {diffs[1949]:+.4f}], users better {sum(a[u] > b[u] for u in us)}, "
          f"worse {sum(a[u] < b[u] for u in us)}; {names[0]} 95% [{levels[50] / chance:.2f}x, {levels[1949] / chance:.2f}x] chance")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("run", "report"))
    parser.add_argument("db", type=Path)
    parser.add_argument("dataset")
    parser.add_argument("--users", type=int, default=250)
    parser.add_argument("--chunk", type=int, default=125)
    parser.add_argument("--budget", type=float, default=420.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-topics", type=int, default=5)
    parser.add_argument("--steps", type=lambda x: tuple(x.split(",")), default=("label", "logprobs"),
                        help="label,logprobs (either or both, in the first chunk's order)")
    parser.add_argument("--scoring", choices=("first-token", "exact"), default="first-token")
    parser.add_argument("--compare", default="", help="two profile rules to bootstrap, comma-separated")
    args = parser.parse_args()
    resolved = resolve_model(EMBEDDED_ALIAS, args.db.parent / "models", {})
    if args.mode == "report":
        report(args, resolved.model_id)
    else:
        run(args, resolved.model_id, resolved.folder)


if __name__ == "__main__":
    main()
