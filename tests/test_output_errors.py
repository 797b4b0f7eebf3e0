"""Outputs the machine refuses (a full disk, a read-only folder, a file-size limit) end in one
line naming the file and what to do, exit code 2, and leave no half-written file behind."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_local.cli import app
from genre_local.cli_support import write_error_line
from genre_local.files import write_atomically
from genre_local.store import open_store
from tests.support_report import add_dataset, add_run, all_metrics

ROOT = Path(__file__).resolve().parent.parent


def _limited(args: list[str], max_file_bytes: int) -> subprocess.CompletedProcess:
    """`python -m genre_local ARGS` where no file may grow past `max_file_bytes`: writes beyond it
    fail with EFBIG, a real OS refusal as a full disk's ENOSPC is (SIGXFSZ ignored, as shells do)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "genre_local", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, preexec_fn=limit, timeout=120)


def test_write_atomically_keeps_the_old_file_and_no_temporary_when_the_write_fails(tmp_path: Path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")

    def half_then_full(tmp: Path) -> None:
        tmp.write_text("half of the new")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError):
        write_atomically(target, half_then_full)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]
    assert write_atomically(tmp_path / "plot.png", lambda tmp: tmp.write_bytes(b"png")).read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png", "table.csv"]


def test_write_error_line_names_the_file_the_reason_and_what_to_do():
    full = write_error_line(OSError(errno.ENOSPC, "No space left on device", "/data/report/index.html"))
    assert full == ("cannot write /data/report/index.html: the disk is full; free space there or write elsewhere "
                    "(--out, --db or [paths] in genre.toml) and rerun")
    assert write_error_line(OSError(errno.EROFS, "Read-only file system")).startswith(
        "cannot write an output file: the file system is read-only; write elsewhere")
    assert write_error_line(OSError(errno.ENOENT, "No such file or directory", "x")) is None
    assert write_error_line(ValueError("bug")) is None


def test_synth_past_a_file_size_limit_is_one_line_exit_2_and_writes_nothing(tmp_path: Path):
    done = _limited(["data", "synth", str(tmp_path / "out"), "--news", "150", "--users", "60"], 20_000)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "the file would exceed the file-size limit" in lines[0], lines
    assert lines[0].startswith(f"error: cannot write {tmp_path / 'out'}/")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its temporary sibling


def test_report_past_a_file_size_limit_is_one_line_exit_2_and_leaves_no_partial_file(tmp_path: Path):
    db = tmp_path / "s.duckdb"
    with open_store(db) as store:
        add_dataset(store, "d")
        for seed in (1, 2):
            add_run(store, "d", "nrms", "original", seed, all_metrics(0.6))
            add_run(store, "d", "nrms", "ns", seed, all_metrics(0.62))
    out = tmp_path / "report"
    # The CSV files fit, index.html does not (plots off to keep the test fast; PNGs are written the same way).
    done = _limited(["--db", str(db), "report", "--dataset", "d", "--out", str(out), "--no-plots"], 6_000)
    assert done.returncode == 2, done.stderr[-2000:]
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert error == [f"error: cannot write {out / 'index.html'}: the file would exceed the file-size limit; raise "
                     "the limit (ulimit -f) or write elsewhere (--out, --db or [paths] in genre.toml) and rerun"]
    written = sorted(p.name for p in out.iterdir())
    assert written and all(name.endswith(".csv") for name in written), written  # no index.html, whole or half


def test_predict_refuses_an_out_that_is_a_folder_or_a_device(tmp_path: Path):
    for out in (tmp_path, Path("/dev/null")):
        result = CliRunner().invoke(app, ["--db", str(tmp_path / "s.duckdb"), "predict", "--model", "nrms",
                                          "--dataset", "d", "--out", str(out)])
        assert result.exit_code == 2
        assert f"--out {out} exists and is not a regular file" in result.output
    assert Path("/dev/null").is_char_device()
