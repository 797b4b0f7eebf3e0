"""A quiet terminal: third-party logs, warnings and progress bars stay off it unless the user
asks for them (`--verbose` / `-v`, or `--debug`). Our own output and errors never pass
through any of these channels, so they are unaffected.

The noise comes from several processes: the CLI itself, vLLM's engine and worker processes
(spawned: fresh interpreters that re-import `genre_local` as part of the main module) and
multiprocessing's resource tracker. Hence two layers:

- environment variables, set before the libraries are imported and inherited by every child:
  vLLM's log level, torch's C++ log level (vLLM's NUMA binding notice), tqdm's progress bars
  (the GGUF conversion's, hundreds of carriage-return lines in a log), Python's warning filters;
- in-process logger levels and warning filters, for messages libraries emit at import time
  before their own logging is configured (vLLM's "Triton is installed, but doesn't include CPU
  backend" goes to Python's last-resort handler). `genre_local/__init__.py` re-applies these in
  spawned children when `GENRE_VERBOSE=0` says the parent is quiet.
"""

from __future__ import annotations

import logging
import os
import warnings

VERBOSE_ENV = "GENRE_VERBOSE"  # "1": show third-party output; "0": a quiet genre-local parent

# Only defaults: a value the user set on purpose wins.
QUIET_ENVIRONMENT: dict[str, str] = {
    "VLLM_LOGGING_LEVEL": "ERROR",  # an engine that fails to start still logs its root cause
    "TORCH_CPP_LOG_LEVEL": "ERROR",  # C++ warnings, e.g. "NUMA binding: Using MEMBIND policy"
    "TQDM_DISABLE": "1",  # GGUF conversion, weight loading and checkpoint shard bars
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    # Read at start-up by every child interpreter (vLLM's workers, the resource tracker).
    "PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning,"
    "ignore::UserWarning:multiprocessing.resource_tracker",
}

NOISY_LOGGERS: tuple[str, ...] = ("vllm", "torch", "transformers", "xgrammar", "huggingface_hub")


def install(verbose: bool) -> None:
    """Called once per CLI process, before any heavy import. A verbose parent's request
    (`GENRE_VERBOSE=1`, e.g. the demo's child commands) counts as verbose here too."""
    if verbose or os.environ.get(VERBOSE_ENV) == "1":
        os.environ[VERBOSE_ENV] = "1"
        return
    os.environ[VERBOSE_ENV] = "0"
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    silence_in_process()


def silence_in_process() -> None:
    """Warning filters and logger levels for this interpreter (children read the environment)."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="multiprocessing.resource_tracker")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def is_quiet() -> bool:
    return os.environ.get(VERBOSE_ENV) == "0"
