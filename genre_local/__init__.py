"""genre-local: offline LLM-powered generative news recommendation (GENRE)."""

__version__ = "0.1.0"

import os as _os

# Air-gapped by design: every model comes from a local folder or an embedded package, so the
# Hugging Face libraries must never try the network (they would hang or fail at user sites).
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# vLLM's engine and worker processes are fresh interpreters that import this package (as part of
# the main module) before vLLM: a quiet CLI parent's filters must apply there too (quiet.py).
if _os.environ.get("GENRE_VERBOSE") == "0":
    from genre_local.quiet import silence_in_process as _silence_in_process

    _silence_in_process()
