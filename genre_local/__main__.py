"""Entry point for `genre-local` and `python -m genre_local` (also under `accelerate launch -m`)."""

from __future__ import annotations

import importlib.util
import sys


def main() -> None:
    from genre_local.cli import app

    app()


def spawned_children_import_the_package(namespace: dict[str, object]) -> None:
    """Under `python -m genre_local` (the demo's steps, `accelerate launch -m`), make processes
    started with multiprocessing's spawn (vLLM's engine, and its worker in turn) import
    `genre_local` first, as they do under the `genre-local` script. multiprocessing never
    re-imports a main module named `*.__main__` in a spawned child, so the child would import
    vLLM before `genre_local` could apply a quiet parent's filters (vLLM's import-time Triton
    notice reached the terminal). Named by its package, the main module is re-imported as
    `__mp_main__`: the package, then this file, whose guard below keeps `main()` from running
    there. `namespace` is the main module's globals: a child's main module is built from them."""
    spec = namespace.get("__spec__")
    if getattr(spec, "name", None) == f"{__package__}.__main__":
        namespace["__spec__"] = importlib.util.find_spec(__package__)


# Here as the main module, or re-imported as a spawned child's (which may spawn again).
if __name__ in ("__main__", "__mp_main__"):
    spawned_children_import_the_package(globals())
# vLLM and accelerate start worker processes that re-import the main module: run only when
# executed, never on import.
if __name__ == "__main__":
    main()
