"""`genre-local demo`: every stage end to end on the embedded defaults.

Each step runs as its own `genre-local` process, exactly the command a user would type (and
printed as such), so the demo doubles as a tutorial and every stage gets a clean process: vLLM's
engine and accelerate's state never outlive their step.
"""

from __future__ import annotations

import os
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.rule import Rule

from genre_local.cli_support import app_context, command_errors, stdout_console
from genre_local.config import resolve_relative
from genre_local.errors import UserError
from recsys.catalog import MODEL_NAMES, VARIANT_PARTS

DEMO_DATASET = "demo"
# The default plan fits in 8 minutes on an idle 2-core machine (BENCHMARKS.md, "The demo's time"):
# generation takes over half of it, each train run about half a minute. --full adds DIN, the
# ranking side, as the paper's tables have it (about 2 minutes more).
DEFAULT_MODELS = "nrms"
FULL_MODELS = "nrms,din"


@dataclass(frozen=True)
class DemoStep:
    title: str
    args: list[str]


def finished_message(minutes: float, trained: int, seeds: int, db_path: Path, report_dir: Path) -> str:
    # "ran", not "trained": on a rerun over the same store train keeps a stored run (run_match.py)
    return (f"demo finished in {minutes:.1f} min; ran {trained} model/variant train steps (a run already "
            f"stored is kept, not trained again), "
            f"{seeds} seed{'s' if seeds != 1 else ''} each ([train] seeds); store: {db_path}; report: {report_dir}")


def demo_steps(
    data_dir: Path,
    report_dir: Path,
    dataset_exists: bool,
    news: int,
    users: int,
    seed: int,
    models: list[str],
    variants: list[str],
    epochs: int,
    llm: str,
    seeds: int = 1,
    prompts: str | None = None,
    source: str | None = None,
) -> list[DemoStep]:
    """The demo's commands. `prompts`: the generate step's prompt set (None: generate's default
    for the model); `source`: the generation source (LLM/set label) the train steps of enriched
    variants read, so a store holding other sources too never stops the demo to ask."""
    steps = []
    if not (data_dir / "train" / "behaviors.tsv").exists():
        steps.append(
            DemoStep("synthetic MIND data", ["data", "synth", str(data_dir), "--news", str(news), "--users", str(users), "--seed", str(seed)])
        )
    if not dataset_exists:
        steps.append(DemoStep("import into DuckDB", ["data", "import", str(data_dir), "--name", DEMO_DATASET]))
    steps.append(DemoStep("dataset statistics", ["data", "stats", "--name", DEMO_DATASET]))
    steps.append(
        DemoStep(
            "GENRE generation: summarize, profile, news, chain",
            ["generate", "--dataset", DEMO_DATASET, "--model", llm, "--task", "all"]
            + (["--prompts", prompts] if prompts else []),
        )
    )
    for model in models:
        for variant in variants:
            steps.append(
                DemoStep(
                    f"train {model} on {variant} ({seeds} seed{'s' if seeds != 1 else ''})",
                    ["train", "--model", model, "--dataset", DEMO_DATASET, "--variant", variant, "--epochs", str(epochs),
                     "--seeds", str(seeds)] + (["--llm", source] if source and variant != "original" else []),
                )
            )
    steps.append(DemoStep("report", ["report", "--dataset", DEMO_DATASET, "--out", str(report_dir)]))
    return steps


@dataclass(frozen=True)
class StepTime:
    """One finished step: wall seconds, and the CPU seconds (user + system) of its process tree."""

    title: str
    wall_s: float
    cpu_s: float


def children_cpu_seconds() -> float:
    """User + system CPU seconds of every finished child process (and the children they waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def adopt_orphans() -> bool:
    """Become the reaper of this process's orphaned descendants (Linux), so their CPU time reaches
    children_cpu_seconds. vLLM's generate step kills its EngineCore process before anyone waits
    for the model worker below it; the worker, which spends most of the step's CPU, is then
    re-parented to init and its CPU time was lost (a generate step showed 28.8 of its 69.5 CPU s).
    False where the call is not available: the figures then miss such processes, as before."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap_orphans(wait_s: float = 2.0) -> None:
    """Wait for adopted descendants, giving ones still exiting up to `wait_s` (a killed worker
    takes a moment); one that lives on is left alone and simply not counted."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # no children left
        if pid == 0:
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)


def time_summary(times: list[StepTime], cores: int, load: float | None = None) -> list[str]:
    """Where the demo's time went. On a shared machine wall time measures the neighbours too, so the
    idle-machine figure is estimated from CPU time: a CPU-bound step takes at least CPU/cores (all
    cores busy) and at most its CPU time (one core busy: vLLM's engine on a 2-core box, the
    trainer's single thread on a loaded one). Contention inflates CPU time too (the same vLLM
    requests took about 2.5-2.8x the quiet machine's CPU seconds at load 10, BENCHMARKS.md 2d),
    so when `load` (the 1-minute load average at the end) exceeds the cores the range is an
    upper one."""
    cores = max(1, cores)
    width = max([len(t.title) for t in times] + [5])
    lines = [f"{'step':<{width}}  {'wall s':>7}  {'CPU s':>7}"]
    lines += [f"{t.title:<{width}}  {t.wall_s:>7.0f}  {t.cpu_s:>7.0f}" for t in times]
    wall, cpu = sum(t.wall_s for t in times), sum(t.cpu_s for t in times)
    lines.append(f"{'total':<{width}}  {wall:>7.0f}  {cpu:>7.0f}")
    lines.append(f"idle-machine estimate from CPU time: {cpu / cores / 60:.1f} to {cpu / 60:.1f} min "
                 f"(CPU time over {cores} cores to CPU time on one); this run's wall time: {wall / 60:.1f} min")
    if load is not None and load > cores:
        lines.append(f"load average {load:.1f} on {cores} cores: contention inflates CPU time, so the estimate is an upper one")
    return lines


def _split_list(value: str, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise UserError(f"{option} '{value}' names nothing; give a comma-separated list")
    return items


def demo_models(models: str | None, full: bool) -> list[str]:
    """The models to train: --models when given, else the default set or, with --full, the full one."""
    if models is None:
        models = FULL_MODELS if full else DEFAULT_MODELS
    return _split_list(models, "--models")


def check_plan_names(models: list[str], variants: list[str]) -> None:
    """Before the first step: a misspelt name would otherwise fail only after data and generation."""
    for model in models:
        if model not in MODEL_NAMES:
            raise UserError(f"--models: '{model}' is not a model; use some of {', '.join(MODEL_NAMES)}")
    for variant in variants:
        parts = [p.strip() for p in variant.split("+")]
        unknown = [p for p in parts if p not in VARIANT_PARTS]
        if unknown:
            raise UserError(
                f"--variants: '{variant}' has unknown part '{unknown[0]}'; parts are {', '.join(VARIANT_PARTS)} "
                "(combined with '+', e.g. ns+up+ng)"
            )


@command_errors
def demo(
    ctx: typer.Context,
    news: Annotated[int, typer.Option(help="News items in the synthetic dataset.")] = 600,
    users: Annotated[int, typer.Option(help="Users in the synthetic dataset.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic dataset.")] = 7,
    models: Annotated[
        Optional[str], typer.Option(help=f"Recommenders to train, comma-separated [default: {DEFAULT_MODELS}, "
                                         f"with --full {FULL_MODELS}].")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help=f"Train {FULL_MODELS} (a matching and a ranking model), "
                                                      "about 2 minutes more.")] = False,
    variants: Annotated[str, typer.Option(help="Dataset variants to train on, comma-separated.")] = "original,ns,up,ng",
    epochs: Annotated[int, typer.Option(help="Training epochs per run.")] = 3,
    llm: Annotated[str, typer.Option("--llm", help="Generation model alias or local HF folder.")] = "llama",
    prompts: Annotated[Optional[str], typer.Option("--prompts", help="Prompt set: compact | paper [default: [generate] prompts, else the model's default].")] = None,
    data_dir: Annotated[
        Optional[Path], typer.Option(help="Where the synthetic MIND folder goes (default: demo-data next to the store).")
    ] = None,
) -> None:
    """Synthetic data -> import -> all four generation tasks -> train -> report, on the embedded models.

    Steps already done (data written, dataset imported, generations stored, seeds trained) are skipped on a
    rerun.
    """
    from genre_local.llm.models import resolve_model
    from genre_local.llm.prompt_sets import resolve_prompt_set

    model_names, variant_names = demo_models(models, full), _split_list(variants, "--variants")
    check_plan_names(model_names, variant_names)
    context = app_context(ctx)
    prompt_set = resolve_prompt_set(prompts or context.config.generate.prompts, llm)
    # The model id names the source the train steps read (prepares the embedded model, as generate would).
    model_id = resolve_model(llm, resolve_relative(context.db_path, context.config.paths.models_dir),
                             context.config.models).model_id
    store_dir = context.db_path.resolve().parent
    store_dir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir or store_dir / "demo-data"
    report_dir = resolve_relative(context.db_path, context.config.paths.reports_dir)
    with context.open_store() as store:
        dataset_exists = DEMO_DATASET in store.dataset_names()
    # the seed count is passed explicitly, so the summary states what every train step ran
    seeds = context.config.train.seeds
    steps = demo_steps(data_dir, report_dir, dataset_exists, news, users, seed, model_names, variant_names, epochs, llm,
                       seeds, prompt_set.name, f"{model_id}/{prompt_set.name}")
    base = [sys.executable, "-m", "genre_local", "--db", str(context.db_path)]
    if context.config.source is not None:
        base += ["--config", str(context.config.source)]
    shown = ["genre-local", "--db", str(context.db_path)]
    console = stdout_console()
    started = time.perf_counter()
    adopt_orphans()
    times: list[StepTime] = []
    for number, step in enumerate(steps, start=1):
        console.print(Rule(f"[bold]{number}/{len(steps)} {step.title}"))
        console.print(f"$ {shlex.join(shown + step.args)}", highlight=False)
        step_started, cpu_started = time.perf_counter(), children_cpu_seconds()
        completed = subprocess.run(base + step.args, check=False)
        reap_orphans()
        if completed.returncode != 0:
            raise UserError(
                f"demo step {number} ({step.title}) failed with exit code {completed.returncode}; "
                f"fix the cause above and rerun `genre-local demo` (finished steps are skipped)"
            )
        times.append(StepTime(step.title, time.perf_counter() - step_started, children_cpu_seconds() - cpu_started))
        console.print(f"[dim]step took {times[-1].wall_s:.0f}s ({times[-1].cpu_s:.0f} CPU s)[/dim]")
    console.print(Rule("time per step"))
    for line in time_summary(times, os.cpu_count() or 1, os.getloadavg()[0]):
        console.print(line, highlight=False)
    console.print(Rule())
    trained = len(model_names) * len(variant_names)
    # markup off: rich would read "[train]" as a style tag and drop it
    console.print(finished_message((time.perf_counter() - started) / 60, trained, seeds, context.db_path, report_dir),
                  markup=False, highlight=False)
    page = report_dir / "index.html"  # the report step writes it for --dataset with --out
    if page.exists():
        console.print(f"open in a browser: {page.absolute()}", highlight=False)
