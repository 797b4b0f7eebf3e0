# genre-local tasks. `scripts/setup.sh` installs `just` into .venv (package rust-just).

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes
default:
    @just --list

# Create .venv and install everything (idempotent)
setup:
    scripts/setup.sh

# Whole pipeline on the embedded defaults: synth -> import -> generate -> train -> report
demo: setup
    .venv/bin/genre-local --db demo/genre.duckdb demo

# The whole test suite (what CI runs)
test: setup
    .venv/bin/python -m pytest -q

# Fast tests only (no real LLM engine)
test-fast: setup
    .venv/bin/python -m pytest -q -m "not engine and not slow"

# Benchmarks: each script prints a table and writes JSON under bench-results/
bench: setup
    for s in scripts/bench_*.py; do .venv/bin/python "$s"; done
