"""Entry point for `genre-local` and `python -m genre_local` (also under `accelerate launch -m`)."""

from __future__ import annotations


def main() -> None:
    from genre_local.cli import app

    app()


# vLLM and accelerate start worker processes that re-import the main module: run only when
# executed, never on import.
if __name__ == "__main__":
    main()
