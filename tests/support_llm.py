"""The embedded SmolLM2, prepared once for every test that needs the real folder.

The GGUF -> safetensors conversion is a pure function of the pinned package and costs ~30 CPU
seconds (minutes on a busy machine), so it is kept across tests and test sessions
(GENRE_TEST_MODELS, default under the temp dir). `genre-local models prepare` itself is tested
once, in tests/test_quiet.py; the other tests link this folder where a store expects it.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path


def prepared_model() -> Path:
    """The embedded SmolLM2 as a safetensors folder. A file lock: parallel test sessions on one
    machine share the folder, and one of them converts while the others wait."""
    from genre_local.llm.models import EMBEDDED_GGUF, MODEL_CACHE_ENV, prepare_embedded

    root = Path(os.environ.get("GENRE_TEST_MODELS") or Path(tempfile.gettempdir()) / "genre-local-test-models")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # This folder is the suite's cache already: nothing goes to the user's model cache.
        return prepare_embedded(root / EMBEDDED_GGUF.removesuffix(".gguf"), environ={MODEL_CACHE_ENV: ""})


def link_prepared_model(models_dir: Path) -> Path:
    """`models_dir` (a store's [paths] models_dir) with the embedded model's folder linked in,
    so the `llama` alias needs no conversion; returns models_dir."""
    from genre_local.llm.models import EMBEDDED_FOLDER

    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / EMBEDDED_FOLDER).symlink_to(prepared_model(), target_is_directory=True)
    return models_dir
