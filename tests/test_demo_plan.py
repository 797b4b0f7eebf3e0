"""The demo's step plan: skips finished data steps, runs every stage in order."""

from __future__ import annotations

from pathlib import Path

from genre_local.commands.demo import demo_steps


def plan(tmp_path: Path, dataset_exists: bool) -> list[list[str]]:
    steps = demo_steps(tmp_path / "data", tmp_path / "report", dataset_exists, 600, 300, 7, ["nrms", "din"], ["original", "ns"], 2, "llama")
    return [s.args for s in steps]


def test_fresh_demo_runs_every_stage(tmp_path: Path) -> None:
    args = plan(tmp_path, dataset_exists=False)
    commands = [a[0] if a[0] not in ("data",) else " ".join(a[:2]) for a in args]
    assert commands == ["data synth", "data import", "data stats", "generate", "train", "train", "train", "train", "report"]
    assert ["--task", "all"] == args[3][-2:]
    trained = {(a[a.index("--model") + 1], a[a.index("--variant") + 1]) for a in args if a[0] == "train"}
    assert trained == {("nrms", "original"), ("nrms", "ns"), ("din", "original"), ("din", "ns")}
    assert all(a[a.index("--seeds") + 1] == "1" for a in args if a[0] == "train")


def test_the_plan_states_and_passes_the_seed_count(tmp_path: Path) -> None:
    steps = demo_steps(tmp_path / "data", tmp_path / "report", True, 600, 300, 7, ["din"], ["original"], 2, "llama", 3)
    train = [s for s in steps if s.args[0] == "train"]
    assert [s.title for s in train] == ["train din on original (3 seeds)"]
    assert train[0].args[train[0].args.index("--seeds") + 1] == "3"


def test_rerun_skips_data_already_there(tmp_path: Path) -> None:
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "train" / "behaviors.tsv").write_text("")
    args = plan(tmp_path, dataset_exists=True)
    assert args[0][:2] == ["data", "stats"]


def test_demo_defaults_name_known_models_and_variants() -> None:
    from genre_local.commands.demo import check_plan_names

    check_plan_names(["nrms", "din"], ["original", "ns", "up", "ng", "ns+up+ng", "chain"])


def test_misspelt_models_or_variants_stop_the_demo_before_anything_runs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from genre_local.cli import app

    db = tmp_path / "store" / "g.duckdb"
    for args, message in (
        (["--models", "nrms,dinn"], "--models: 'dinn' is not a model"),
        (["--variants", "original,ns+upp"], "--variants: 'ns+upp' has unknown part 'upp'"),
        (["--models", " , "], "--models ' , ' names nothing"),
    ):
        result = CliRunner().invoke(app, ["--db", str(db), "demo", *args])
        assert result.exit_code == 2, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "store").exists()  # no folder, store or data written


def test_the_demo_help_names_the_full_set() -> None:
    from typer.testing import CliRunner

    from genre_local.cli import app

    result = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--full" in result.output and "nrms,din" in result.output


def test_the_plan_passes_the_prompt_set_and_the_source_to_enriched_runs(tmp_path: Path) -> None:
    steps = demo_steps(tmp_path / "data", tmp_path / "report", True, 600, 300, 7, ["nrms"], ["original", "ns", "up"], 2,
                       "llama", 1, "paper", "llama:x/paper")
    generate = next(s.args for s in steps if s.args[0] == "generate")
    assert generate[generate.index("--prompts") + 1] == "paper"
    train = {s.args[s.args.index("--variant") + 1]: s.args for s in steps if s.args[0] == "train"}
    assert "--llm" not in train["original"]
    assert all(train[v][train[v].index("--llm") + 1] == "llama:x/paper" for v in ("ns", "up"))


def test_demo_refuses_an_unknown_prompt_set_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from genre_local.cli import app

    from typer.testing import CliRunner

    from genre_local.cli import app

    result = CliRunner().invoke(app, ["--db", str(tmp_path / "d.duckdb"), "demo", "--prompts", "fancy"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1 and "--prompts 'fancy'" in result.stderr
    assert not (tmp_path / "demo-data").exists()


def test_the_last_line_names_the_seeds_setting_through_rich() -> None:
    """Regression: rich took "[train]" for a style tag and printed "( seeds)"."""
    import io

    from rich.console import Console

    from genre_local.commands.demo import finished_message

    out = io.StringIO()
    Console(file=out, width=300).print(finished_message(13.1, 4, 1, Path("s.duckdb"), Path("r")), markup=False,
                                       highlight=False)
    assert "1 seed each ([train] seeds)" in out.getvalue()


def test_time_summary_estimates_idle_time_from_cpu_and_flags_a_loaded_machine() -> None:
    from genre_local.commands.demo import StepTime, time_summary

    times = [StepTime("generate", 600.0, 240.0), StepTime("train", 120.0, 60.0)]
    quiet = time_summary(times, cores=2, load=1.5)
    assert quiet[-1] == ("idle-machine estimate from CPU time: 2.5 to 5.0 min (CPU time over 2 cores to CPU time "
                         "on one); this run's wall time: 12.0 min")
    assert quiet[-2].split() == ["total", "720", "300"]
    loaded = time_summary(times, cores=2, load=9.5)
    assert loaded[:-1] == quiet and "load average 9.5 on 2 cores" in loaded[-1] and "upper" in loaded[-1]
    assert time_summary(times, cores=2) == quiet  # no load figure: no claim about it


_ORPHAN_PROBE = """
import subprocess, sys
from genre_local.commands.demo import adopt_orphans, children_cpu_seconds, reap_orphans
adopted = adopt_orphans() if sys.argv[1] == "adopt" else False
# The child starts a grandchild that burns 0.3 CPU s and exits without waiting for it,
# as vLLM's front end does with its model worker.
spin = "import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass"
child = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {spin!r}]); sys.exit(0)"
before = children_cpu_seconds()
subprocess.run([sys.executable, "-c", child], check=True)
reap_orphans(wait_s=5.0)
print(adopted, children_cpu_seconds() - before)
"""


def test_step_cpu_counts_a_grandchild_orphaned_by_its_parent() -> None:
    """The demo's CPU figure for a step includes processes the step's command left behind."""
    import os
    import subprocess
    import sys

    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    runs = {}
    for mode in ("adopt", "plain"):
        out = subprocess.run([sys.executable, "-c", _ORPHAN_PROBE, mode], capture_output=True, text=True, env=env,
                             check=True, timeout=60).stdout.split()
        runs[mode] = (out[0] == "True", float(out[1]))
    adopted, counted = runs["adopt"]
    assert adopted, "prctl(PR_SET_CHILD_SUBREAPER) is available on Linux"
    # The grandchild's 0.3 s counts only when adopted; without, it is lost (what the demo printed before).
    assert counted - runs["plain"][1] >= 0.25
