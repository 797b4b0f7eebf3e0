"""One process that runs the vLLM tests' `genre-local` commands one after another, starting the
engine once for all of them.

A vLLM start on a 2-core machine costs 30 s to minutes (plus ~15 s of imports per process), and
each engine test needs a real engine to answer, not its own start: the start itself is covered
by the first command here and by tests/test_quiet.py. A command runs as `python -m genre_local`
runs it (the Typer app, standalone: exit code, stdout, stderr apart), except that `open_backend`
hands it the engine an earlier command opened with the same options (the model folder compared
by its real path), and that engine stays open after the command, until the host exits.

The test side (EngineHost, the `engine_host` fixture in tests/conftest.py) sends one JSON line
per command on stdin; the host answers with one marked line on its own stdout. Everything else
the process or vLLM's engine process writes goes to a log file, whose tail a failure shows.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import traceback
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "@@engine-host@@ "


class EngineHost:
    """The test side: a lazily started host process; `run` returns what `subprocess.run` would."""

    def __init__(self, log: Path):
        self.log = log
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        proc = self._start()
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(list(args)) + "\n")
        proc.stdin.flush()
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                self.close()
                raise TimeoutError(f"engine host: no answer in {timeout} s to {args}; log tail:\n{self._tail()}") from None
            if line is None:
                raise RuntimeError(f"engine host exited (code {proc.wait()}) during {args}; log tail:\n{self._tail()}")
            if line.startswith(MARK):
                done = json.loads(line[len(MARK):])
                return subprocess.CompletedProcess(list(args), done["code"], done["stdout"], done["stderr"])

    def close(self) -> None:
        """Stop the host (its engines close on the way out)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _start(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen([sys.executable, "-m", "tests.support_engine_host"], cwd=ROOT, text=True,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        self._lines = queue.Queue()
        threading.Thread(target=self._read, args=(self._proc, self._lines), daemon=True).start()
        return self._proc

    @staticmethod
    def _read(proc: subprocess.Popen, lines: queue.Queue) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"


def _sharing_open_backend(opened: dict):
    """open_backend, but one engine per (backend, options) for the life of the process."""
    from genre_local.llm import backend as backend_module

    open_real = backend_module.open_backend

    class Shared:
        """The engine, whose close() waits for the host's exit."""

        def __init__(self, engine):
            self._engine = engine
            self.name, self.options = engine.name, engine.options

        def __getattr__(self, attr):
            return getattr(self._engine, attr)

        def close(self) -> None:
            pass

    def open_backend(name, options):
        key = (name, replace(options, model_dir=Path(options.model_dir).resolve()))
        if key not in opened:
            opened[key] = open_real(name, options)
        return Shared(opened[key])

    return open_backend


def serve() -> None:
    from typer.testing import CliRunner

    from genre_local.cli import app
    from genre_local.llm import backend as backend_module

    # The protocol owns the real stdout; anything else written to fd 1 (by us or a child) goes to the log.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    opened: dict = {}
    backend_module.open_backend = _sharing_open_backend(opened)
    try:
        for line in sys.stdin:
            result = CliRunner().invoke(app, json.loads(line))
            stderr = result.stderr
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                # What the interpreter would print for an uncaught exception.
                stderr += "".join(traceback.format_exception(result.exception))
            answers.write(MARK + json.dumps({"code": result.exit_code, "stdout": result.stdout, "stderr": stderr}) + "\n")
            answers.flush()
    finally:
        for engine in opened.values():
            engine.close()


# vLLM's engine process re-imports the main module: serve only when executed.
if __name__ == "__main__":
    serve()
