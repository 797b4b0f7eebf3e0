"""The training settings (genre.toml's [train] section) and every check on them.

Torch-free and import-cheap: the genre-local config loader builds this dataclass for [train],
and the CLI, the library API (`recsys.experiment.run`) and the benchmark all get the same
checks because they live in `__post_init__` (`dataclasses.replace` runs them again, so flags
applied on top of a file are checked too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from recsys.catalog import DECAY_SCOPES, FUSION_FORMS, NEWS_FEATURES, OPTIMIZERS, PLMNR_HISTORY
from recsys.cpu import BF16_CHOICES
from recsys.errors import ConfigError
from recsys.tracking import DEFAULT_TRACKER, check_tracker_name

MAX_SEEDS = 1000
REPORT_SPLITS = ("auto", "dev", "test")
# Generous upper bounds: they only stop typos (one extra digit) from allocating or looping for
# hours, never a real setting.
_COUNT_BOUNDS: dict[str, tuple[int, int]] = {
    "embed_dim": (1, 8192),
    "num_heads": (1, 256),
    "transformer_layers": (1, 64),
    "epochs": (1, 10_000),
    "batch_size": (1, 1_000_000),
    "eval_batch_size": (1, 1_000_000),
    "negatives": (1, 1000),
    "history_len": (1, 10_000),
    "title_len": (3, 512),  # "[CLS] at least one token [SEP]"; 512 = MiniLM's positions
    "abstract_len": (3, 512),
    "patience": (1, 10_000),
    "seeds": (1, MAX_SEEDS),
    "seed": (0, 2**31 - 1 - MAX_SEEDS),  # seed .. seed+seeds-1 must stay a valid RNG seed
    "ng_k": (0, 1000),
    "lora_rank": (1, 1024),
    "checkpoint_every": (0, 1_000_000_000),
    "num_workers": (0, 256),
    "threads": (0, 4096),
    "max_steps": (0, 1_000_000_000),
}


def parse_features(text: str) -> tuple[str, ...]:
    """`title,category` -> ('title', 'category'); title is required by every model."""
    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in NEWS_FEATURES]
    if unknown:
        raise ConfigError("features", f"has an unknown feature '{unknown[0]}' (choose from {', '.join(NEWS_FEATURES)})")
    if "title" not in names:
        raise ConfigError("features", "must include 'title' (every model reads the news title)")
    return names


@dataclass(frozen=True)
class TrainConfig:
    embed_dim: int = 64
    num_heads: int = 4
    transformer_layers: int = 3
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 0.01
    # GENRE trains with Adam and L2 weight decay 0.01 (added to the gradient); "adamw" decouples it.
    optimizer: str = "adam"
    # Which parameters the decay reaches (recsys/optim.py): "weights", the weight matrices (not
    # lookup tables, biases, vectors, the gated fusion nor LoRA adapters), or "all" (before issue 9 part 5).
    decay_scope: str = "weights"
    # How the `up` profile meets the user vector: "gated" (starts as the identity on v_u) or
    # "paper" (GENRE eq. 2 as written); recsys/layers/fusion.py.
    interest_fusion: str = "gated"
    epochs: int = 3
    batch_size: int = 64
    eval_batch_size: int = 256
    negatives: int = 4
    history_len: int = 50
    title_len: int = 30
    abstract_len: int = 50
    patience: int = 2
    seeds: int = 1
    ng_k: int = 2
    features: str = "title,category"
    lora_rank: int = 8
    # PLMNR: how a training step encodes history-only news: exact | no-grad | cached | states
    # (catalog.PLMNR_HISTORY; the three approximations are faster per step).
    plmnr_history: str = "exact"
    seed: int = 1  # first seed; seeds N runs seed, seed+1, ..., seed+N-1
    # Training steps per epoch at most (0 = every batch): with epochs = 1 it bounds a whole
    # training, e.g. a timed run on MIND-large-sized data (scripts/bench_scale.py).
    max_steps: int = 0
    checkpoint_every: int = 500  # steps between mid-epoch checkpoints (0 = at epoch ends only)
    num_workers: int = 0  # DataLoader worker processes assembling batches
    fast_eval: bool = True  # encode each news/user once per evaluation (same scores as the naive path)
    threads: int = 0  # torch CPU threads per process; 0 = picked from the cores and the machine's load
    bf16: str = "auto"  # bfloat16 autocast in training: auto (CUDA, and PLMNR on CPUs with native bf16: recsys/cpu.py), on, off
    encoder: str = ""  # DIRE's news encoder: a local LLaMA-family Hugging Face folder ("" = none given)
    # When dev is the reported split (no labelled test), this share of the train impressions,
    # picked by a hash of the impression id, is held out for early stopping (recsys/stopping.py).
    holdout_fraction: float = 0.1
    # Which split the run reports (recsys/stopping.py): "auto" = test when it is labelled (then dev
    # stops early), else dev; "dev" = dev as on MIND even when test is labelled, so test is never
    # scored (a bounded run on synthetic MIND-large-sized data); "test" = test, which must be labelled.
    report_split: str = "auto"
    track: str = DEFAULT_TRACKER  # training curves to tensorboard | mlflow | wandb | none (recsys/tracking.py)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            expected = {"int": int, "float": (int, float), "str": str, "bool": bool}[str(f.type)]
            if isinstance(value, bool) and f.type != "bool" or not isinstance(value, expected):
                raise ConfigError(f.name, f"must be of type {f.type}, got {value!r}")
            if f.type == "float":
                object.__setattr__(self, f.name, float(value))
        for key, (low, high) in _COUNT_BOUNDS.items():
            value = getattr(self, key)
            if not low <= value <= high:
                raise ConfigError(key, f"must be between {low} and {high}, got {value}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError("lr", f"must be a finite number above 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError("weight_decay", f"must be a finite number of 0 or more, got {self.weight_decay}")
        if not 0.0 <= self.holdout_fraction <= 0.5:  # also false for NaN
            raise ConfigError("holdout_fraction", f"must be between 0 and 0.5, got {self.holdout_fraction}")
        if not 0.0 <= self.dropout < 1.0:  # also false for NaN
            raise ConfigError("dropout", f"must be in [0, 1), got {self.dropout}")
        if self.embed_dim % self.num_heads:
            raise ConfigError("embed_dim", f"must be a multiple of num_heads ({self.num_heads}), got {self.embed_dim}")
        if self.bf16 not in BF16_CHOICES:
            raise ConfigError("bf16", f"must be one of {', '.join(BF16_CHOICES)}, got {self.bf16!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("optimizer", f"must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.decay_scope not in DECAY_SCOPES:
            raise ConfigError("decay_scope", f"must be one of {', '.join(DECAY_SCOPES)}, got {self.decay_scope!r}")
        if self.interest_fusion not in FUSION_FORMS:
            raise ConfigError("interest_fusion", f"must be one of {', '.join(FUSION_FORMS)}, got {self.interest_fusion!r}")
        if self.plmnr_history not in PLMNR_HISTORY:
            raise ConfigError("plmnr_history", f"must be one of {', '.join(PLMNR_HISTORY)}, got {self.plmnr_history!r}")
        if self.report_split not in REPORT_SPLITS:
            raise ConfigError("report_split", f"must be one of {', '.join(REPORT_SPLITS)}, got {self.report_split!r}")
        parse_features(self.features)
        check_tracker_name(self.track)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return parse_features(self.features)

    @property
    def seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]
