#!/usr/bin/env bash
# A short (< 10 min) check for a lent GPU machine, from a clean checkout with the machine's own
# packages (torch, transformers, accelerate, peft; no vLLM, DuckDB, typer, Ray): trains NRMS, DIN, BST,
# PLMNR (exact, cached, states) and DIRE on CUDA under accelerate, generates through the transformers
# backend in bfloat16, and checks BST's packed encoder against torch's on the device, printing the
# rates beside this project's CPU figures; JSON to $OUT/gpu_check.json when $OUT is set.
#   scripts/gpu_check.sh                      # defaults (see scripts/gpu_check.py --help)
#   scripts/gpu_check.sh --minilm .gpu-carry/minilm   # PLMNR on the real MiniLM (carry .gpu-carry; see README)
#   scripts/gpu_check.sh --device cpu --news 400 --users 200 --requests 8 --tiny-llm
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
# HF libraries offline (no network on the lent machines); the repository on the path, not installed.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout "${GPU_CHECK_TIMEOUT:-570}" "$PYTHON" scripts/gpu_check.py "$@"
