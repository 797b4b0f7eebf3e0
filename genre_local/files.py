"""Writing an output file so that a failure (a full disk, a killed process) never leaves half of
it: the bytes go to a temporary sibling that is renamed over the target once complete."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def failures_name(path: Path, *internal: Path) -> Iterator[None]:
    """An OSError raised inside names `path`, the file the user asked for: a failed write()
    carries no file name, and a temporary's name (`internal`) would mean nothing to them."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None or (exc.filename is not None and exc.filename not in {str(p) for p in internal}):
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` to fill a hidden sibling of `path`, then rename it to `path`. On any
    failure the old file (or none) stays at `path` and the sibling is removed. The sibling keeps
    the target's suffix, since writers such as matplotlib pick the format from it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        with failures_name(path, tmp):
            write(tmp)
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
