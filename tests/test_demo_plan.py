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


def test_the_time_summary_estimates_the_idle_machine_from_cpu_time() -> None:
    from genre_local.commands.demo import StepTime, time_summary

    lines = time_summary([StepTime("GENRE generation", 300.0, 240.0), StepTime("train nrms on ns (1 seed)", 100.0, 60.0)],
                         cores=2)
    assert lines[1].split() == ["GENRE", "generation", "300", "240"]
    assert lines[3].split() == ["total", "400", "300"]
    # 300 CPU s: 2.5 min over both cores, 5.0 min on one; the wall time of this (busy) run apart
    assert "2.5 to 5.0 min" in lines[4] and "wall time: 6.7 min" in lines[4]


def test_children_cpu_seconds_counts_a_finished_child() -> None:
    import subprocess
    import sys

    from genre_local.commands.demo import children_cpu_seconds

    before = children_cpu_seconds()
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    assert children_cpu_seconds() - before > 0.05


def test_the_default_plan_is_nrms_and_full_adds_din() -> None:
    from genre_local.commands.demo import demo_models

    assert demo_models(None, full=False) == ["nrms"]
    assert demo_models(None, full=True) == ["nrms", "din"]
    assert demo_models("lstur, naml", full=True) == ["lstur", "naml"]  # an explicit list wins


def test_the_demo_help_names_the_full_set() -> None:
    from typer.testing import CliRunner

    from genre_local.cli import app

    result = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--full" in result.output and "nrms,din" in result.output
