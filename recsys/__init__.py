"""recsys: the GENRE recommender zoo, usable without the genre-local CLI."""

import os as _os

# Air-gapped by design: every model comes from a local folder or an embedded package, so the
# Hugging Face libraries must never try the network (they would hang or fail at user sites).
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
