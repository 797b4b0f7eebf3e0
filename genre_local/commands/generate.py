"""`genre-local generate`: GENRE's LLM stage on a dataset in the store (issue 3)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from genre_local.cli_support import app_context, command_errors, emit_json, stdout_console
from genre_local.config import check_generate_limit, resolve_relative, with_overrides

if TYPE_CHECKING:
    from genre_local.llm.tasks import GenerationTask


@command_errors
def generate(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", "--name", help="Dataset name in the store.")],
    task: Annotated[str, typer.Option("--task", help="summarize | profile | news | chain | all (in that order, one engine).")] = "all",
    model: Annotated[Optional[str], typer.Option("--model", help="'llama' (embedded SmolLM2), a [models] alias, or a local HF folder [default from config].")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="vllm | transformers | auto [default auto: vLLM when installed].")] = None,
    rounds: Annotated[Optional[int], typer.Option("--rounds", help="Iterative rounds; round r+1 reads round r's outputs [default 1].")] = None,
    per_user: Annotated[Optional[int], typer.Option("--per-user", help="News items generated per cold user (news, chain) [default 2].")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N inputs of each task (stable order).")] = None,
    retries: Annotated[Optional[int], typer.Option("--retries", help="Retries of an invalid output [default 2].")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Requests per engine call and per store write [default 256].")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="Sampling temperature; 0 is greedy [default 0].")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampling seed [default 0].")] = None,
    price_per_hour: Annotated[Optional[float], typer.Option("--price-per-hour", help="Machine price per hour, to state the run's cost in money.")] = None,
    prefix_caching: Annotated[bool, typer.Option("--prefix-caching/--no-prefix-caching", help="vLLM prefix cache (shared instructions computed once).")] = True,
    constrained: Annotated[bool, typer.Option("--constrained/--no-constrained", help="Constrain decoding to each task's JSON schema.")] = True,
    prompts: Annotated[Optional[str], typer.Option("--prompts", help="Prompt set: compact | paper [default from config; unset: compact for the embedded model, paper for others].")] = None,
    gpus: Annotated[Optional[int], typer.Option("--gpus", help="Engine processes, one per GPU (without GPUs: CPU worker processes), each on its own share of the requests [default from config: 1].")] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help="local (this machine) | ray (a Ray Data pipeline) [default from config: local].")] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="--engine ray: a running cluster (HOST:PORT) [default from config; unset starts Ray here].")] = None,
    replicas: Annotated[Optional[int], typer.Option("--replicas", help="--engine ray: engine replicas [default --gpus when > 1, else 2].")] = None,
    tensor_parallel: Annotated[int, typer.Option("--tensor-parallel", help="--engine ray on GPUs: GPUs per vLLM replica.")] = 1,
    run_dir: Annotated[Optional[Path], typer.Option("--run-dir", help="Folder for result shards (shared storage on a cluster) [default <cache_dir>/generation-shards].")] = None,
    profile_method: Annotated[str, typer.Option("--profile-method", help="How the profiler answers: generate (the LLM writes the profile) | score (ranks every topic and state by the LLM's calibrated likelihood) | label (the LLM labels each clicked news once with a topic and a state; a profile counts its news' labels; compact prompts only) | label-score (as label, and the LLM also scores all 19 topics per news; topics by the scores calibrated over every news in every user's window, which is labelled and scored whatever --limit; compact prompts only).")] = "generate",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print one rendered prompt per task; load no model.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Also print one JSON object as the last stdout line.")] = False,
) -> None:
    """Run a GENRE generation task (summarize | profile | news | chain | all) with a local LLM."""
    from genre_local.data.names import check_dataset_name
    from genre_local.llm.prompt_sets import resolve_prompt_set
    from genre_local.pipeline.scale import check_scale, scale_from_config

    check_dataset_name(dataset, "--dataset")
    context = app_context(ctx)
    cfg = with_overrides(
        context.config.generate, model=model, backend=backend, rounds=rounds, per_user=per_user, retries=retries,
        batch_size=batch_size, temperature=temperature, seed=seed, price_per_hour=price_per_hour, prompts=prompts,
    )
    check_generate_limit(limit)
    scale = check_scale(scale_from_config(cfg, engine=engine, gpus=gpus, ray_address=ray_address, replicas=replicas,
                                          tensor_parallel=tensor_parallel, run_dir=run_dir))
    prompt_set = resolve_prompt_set(cfg.prompts, cfg.model)
    tasks = prompt_set.resolve_tasks(task, profile_method)
    if dry_run:
        _dry_run(context, cfg, dataset, tasks, limit, constrained, as_json, prompt_set.name)
        return
    _run(context, cfg, dataset, tasks, limit, prefix_caching, constrained, as_json, scale, prompt_set.name)


def _plan_settings(cfg, dataset: str, model_id: str, limit: int | None, constrained: bool, prompt_set: str):
    from genre_local.pipeline.plan import PlanSettings

    return PlanSettings(
        dataset=dataset, model_id=model_id, temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed,
        per_user=cfg.per_user, history_items=cfg.history_items, limit=limit, constrained=constrained,
        prompt_set=prompt_set, context_tokens=cfg.max_model_len,
    )


def _dry_run(context, cfg, dataset: str, tasks: list[GenerationTask], limit: int | None, constrained: bool, as_json: bool,
             prompt_set: str) -> None:
    from genre_local.pipeline.plan import Planner

    console = stdout_console()
    settings = _plan_settings(cfg, dataset, f"(dry run: {cfg.model})", limit, constrained, prompt_set)
    counts = {}
    with context.open_store() as store:
        store.require_dataset(dataset)
        planner = Planner(store.conn, settings)
        for task in tasks:
            items = planner.plan(store.conn, task, 1)
            if task.aggregates_labels:
                # What the LLM reads is the labelling prompt of each clicked news; the profile
                # aggregates the labels without it (llm/news_labels.py). A prior's set is every
                # user's window, whatever --limit.
                users = {u.user_id for u in planner.task_users(task)}
                counts[task.name] = len(users)  # one aggregated profile per user
                wanted = planner.prior_users() if task.reads_prior else users
                task = task.requires
                items = planner.plan(store.conn, task, 1, only_users=wanted)
            elif task.requires is not None and not items:
                # What it requires is not made yet (the chain's profiles): show the prompt with a stand-in.
                items = planner.preview(task)
            counts[task.name] = len(items)
            version = items[0].prompt_version if items else planner.templates[task.name].version
            console.rule(f"{task.name}: {len(items)} requests, prompt set {prompt_set}, prompt version {version}")
            if not items:
                console.print("(no inputs for this task in the dataset)")
                continue
            for message in items[0].request.messages:
                console.print(f"[bold]{message['role']}[/bold]", highlight=False)
                console.print(message["content"], markup=False, highlight=False)
            scoring = items[0].request.scoring
            if task.name == "label":
                console.print("[bold]then aggregated, not generated[/bold]: each user's profile counts the labels of "
                              "their clicked news (topics by count, the most frequent state)", highlight=False)
            elif task.name == "label_scores":
                console.print(f"[bold]decoded, and every topic scored[/bold]: the label as `label` decodes it, plus each "
                              f"topic's first-token probability after {scoring.answer_prefix}; for all "
                              f"{len(items)} news in every user's window (the prior's set, whatever --limit). Then "
                              "aggregated once all are stored: topics by the soft counts of the scores calibrated by "
                              "their mean over that set (the batch prior), the labelled state of largest excess "
                              "count", highlight=False)
            elif scoring is not None:
                console.print(f"[bold]scored, not generated[/bold]: every topic after {scoring.topic_prefix} and every "
                              f"state after {scoring.region_prefix}, calibrated by the same prompt without headlines; "
                              f"keeps the top {scoring.top_topics} topics and {scoring.top_regions} state", highlight=False)
    if as_json:
        emit_json({"dry_run": True, "dataset": dataset, "prompt_set": prompt_set, "requests": counts})


def _run(context, cfg, dataset, tasks, limit, prefix_caching, constrained, as_json, scale, prompt_set) -> None:
    from genre_local.llm.backend import EngineOptions, choose_backend, open_backend
    from genre_local.llm.models import resolve_model
    from genre_local.pipeline.runner import GenerationRun, LazyEngine, RunSettings
    from genre_local.pipeline.scale import build_executor
    from genre_local.pipeline.sharded_run import ShardedGenerationRun
    from genre_local.progress import task_progress

    from rich.progress import TextColumn

    console = stdout_console()
    backend_name, why = choose_backend(cfg.backend)
    with context.open_store() as store:  # fail on a bad dataset before preparing any model
        store.require_dataset(dataset)
    models_dir = resolve_relative(context.db_path, context.config.paths.models_dir)
    resolved = resolve_model(cfg.model, models_dir, context.config.models)
    options = EngineOptions(
        model_dir=resolved.folder, dtype=cfg.dtype, max_model_len=cfg.max_model_len,
        gpu_memory_utilization=cfg.gpu_memory_utilization, seed=cfg.seed,
        tensor_parallel_size=cfg.tensor_parallel_size, max_num_seqs=cfg.max_num_seqs,
        prefix_caching=prefix_caching, enforce_eager=cfg.enforce_eager,
        micro_batch=cfg.hf_micro_batch,
    )
    settings = RunSettings(
        plan=_plan_settings(cfg, dataset, resolved.model_id, limit, constrained, prompt_set), backend=backend_name,
        retries=cfg.retries, batch_size=cfg.batch_size, rounds=cfg.rounds, price_per_hour=cfg.price_per_hour or None,
    )
    console.print(f"backend: {backend_name} ({why}); model: {resolved.model_id} at {resolved.folder}; prompt set: {prompt_set}",
                  highlight=False)
    engine = LazyEngine(lambda: open_backend(backend_name, options))
    # --gpus N / --engine ray: the engines run in workers that write shards this process merges.
    cache_dir = resolve_relative(context.db_path, context.config.paths.cache_dir)
    executor = build_executor(scale, context.db_path, cache_dir, backend_name, options)
    try:
        with task_progress(TextColumn("{task.fields[rate]}")) as progress:
            if executor is None:
                run = GenerationRun(context.db_path, settings, engine, progress=progress)
            else:
                run = ShardedGenerationRun(context.db_path, settings, executor, progress=progress)
            results = run.run(tasks)
    except KeyboardInterrupt:
        # Every batch is stored in its own transaction: what finished stays, and a rerun skips it.
        print("stopped: the outputs stored so far are kept; the same command goes on with the rest",
              file=sys.stderr, flush=True)
        raise
    finally:
        engine.close()
    started = any(r.startup_seconds for r in results) or (executor is not None and any(r.new for r in results))
    _render(console, run.run_id, results, settings, engine_started=started)
    if as_json:
        emit_json(_summary_json(tasks, results, run.run_id, backend_name, resolved.model_id, prompt_set))


def _render(console, run_id, results, settings, engine_started: bool) -> None:
    from rich import box
    from rich.table import Table

    from genre_local.pipeline.fidelity import format_fidelity

    from genre_local.pipeline.cost import generation_cost

    table = Table(title=f"generation run {run_id}", show_header=True, box=box.SIMPLE_HEAD, pad_edge=False)
    headers = ["task", "rnd", "req", "new", "skip", "valid", "inval", "in tok", "out tok", "eng s", "other s", "tok/s"]
    if settings.price_per_hour:
        headers.append("cost")
    for column in headers:
        table.add_column(column, justify="left" if column == "task" else "right", no_wrap=True)
    for r in results:
        rate = r.completion_tokens / r.engine_seconds if r.engine_seconds else 0.0
        row = [r.task, str(r.round), str(r.requests), str(r.new), str(r.skipped), str(r.valid), str(r.invalid),
               f"{r.prompt_tokens:,}", f"{r.completion_tokens:,}", f"{r.engine_seconds:.1f}",
               f"{r.outside_seconds:.2f}", f"{rate:,.0f}"]
        cost = generation_cost(settings.price_per_hour, r.wall_seconds, r.startup_seconds)
        if cost is not None:
            row.append(f"{cost:.4f}")
        table.add_row(*row)
    # Piped output defaults to 80 columns, too narrow for the numbers: let the table run wider.
    from rich.console import Console

    Console(soft_wrap=True, width=max(console.width, 130)).print(table)
    startup = sum(r.startup_seconds for r in results)
    engine = sum(r.engine_seconds for r in results)
    outside = sum(r.outside_seconds for r in results)
    if engine_started:
        share = 100 * outside / engine if engine else 0.0
        console.print(f"engine start {startup:.1f}s; in engine {engine:.1f}s; outside (plan, parse, store) {outside:.2f}s = {share:.1f}% of engine time")
    else:
        console.print("nothing new to generate: every output is already stored valid (no model loaded)")
    for r in results:
        if r.new:
            console.print(f"{r.task} round {r.round}: {100 * r.valid / r.new:.1f}% valid ({r.valid}/{r.new})", highlight=False)
    for r in results:
        if r.errors:
            top = ", ".join(f"{k} x{v}" for k, v in sorted(r.errors.items(), key=lambda kv: -kv[1])[:3])
            console.print(f"{r.task} round {r.round}: {r.invalid} invalid after retries ({top})", highlight=False)
        if r.fidelity:
            console.print(f"profile fidelity round {r.round}: {format_fidelity(r.fidelity)}", highlight=False)


def _summary_json(tasks, results, run_id, backend, model_id, prompt_set) -> dict:
    from genre_local.store.generations import DEFAULT_METHOD, GenerationSource

    keys = ("requested", "new", "skipped", "valid", "invalid", "prompt_tokens", "completion_tokens")
    # Each task's outputs belong to a source: profile and chain to that of the profile method.
    methods = {t.name: t.profile_method or DEFAULT_METHOD for t in tasks}
    per_task = [r.as_json() | {"source": GenerationSource(model_id, prompt_set, methods.get(r.task, DEFAULT_METHOD)).label}
                for r in results]
    task_names = [t.name for t in tasks]
    total = {k: sum(t[k] for t in per_task) for k in keys}
    seconds = round(sum(t["seconds"] for t in per_task), 3)
    task = task_names[0] if len(task_names) == 1 else "all"
    return {"task": task, **total, "seconds": seconds, "run_id": run_id, "backend": backend, "model": model_id,
            "prompt_set": prompt_set, "source": f"{model_id}/{prompt_set}", "tasks": per_task}
