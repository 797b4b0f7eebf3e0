"""The one rule for "this run is stored already", shared by `grid` (which skips such a cell) and
`train` (which does not train such a seed again unless --retrain); and the one rule for "these
runs were trained the same way", shared by `train` (its paired t-test against `original`) and
`report` (the runs behind each comparison), so neither compares runs of other settings silently.

Two runs are the same run when they have the same model, dataset, variant, features, ng_k,
generation source, seed, data (the fingerprint of the store rows the variant read: a regenerated
profile or a re-imported dataset makes it another run) and settings, less the settings that
change neither what a run learns nor its metrics, and those its model does not read.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from recsys.catalog import unread_settings
from recsys.config import TrainConfig

if TYPE_CHECKING:
    from genre_local.store.generations import GenerationSource
    from genre_local.store.runs import RunIdentity

# Settings that change neither what a run learns nor its metrics: a stored run trained with
# other values of these still counts. seed/seeds are the run's own; features and ng_k are
# compared through the run's identity columns.
NOT_SETTINGS = frozenset({"seed", "seeds", "threads", "num_workers", "checkpoint_every", "fast_eval",
                          "eval_batch_size", "features", "ng_k", "track"})
_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))
_UNRECORDED = "<unrecorded>"  # a setting a run's config lacks (stored before the setting existed)


def settings_of(config: dict, model: str, profile: bool) -> dict:
    """The part of a run's stored config that makes two runs of one identity the same run: not
    NOT_SETTINGS, not the model-specific settings `model` does not read (as its checkpoint
    identity), nor interest_fusion without a profile (`profile`: the variant has `up`); with the
    image file where the features read one (else None)."""
    unread = unread_settings(model, profile)
    kept = {k: v for k, v in config.items() if k in _FIELDS and k not in NOT_SETTINGS and k not in unread}
    return kept | {"image_file": config.get("image_file") if "image" in str(config.get("features")) else None}


def compared_settings(config: dict, model: str) -> dict:
    """The settings on which two runs of `model` must agree to be compared (a variant with its
    `original` baseline, the seeds of one configuration): settings_of, less interest_fusion,
    which is the variant's own (only a variant with a profile reads it; `original` has none)."""
    return settings_of(config, model, profile=False)


def differing_settings(settings: Sequence[dict]) -> list[str]:
    """The names (sorted) of the settings whose values are not the same in all of `settings`
    (compared_settings of runs); a setting one run's config lacks (stored before it existed)
    counts as differing, as it does for stored_run."""
    names = sorted(set().union(*settings)) if settings else []
    return [n for n in names if len({json.dumps(s.get(n, _UNRECORDED), sort_keys=True) for s in settings}) > 1]


def setting_value(settings: dict, name: str) -> str:
    """How a report or train names one run's value of a setting: "unrecorded" where its config lacks it."""
    value = settings.get(name, _UNRECORDED)
    return "unrecorded" if value == _UNRECORDED else ("none" if value is None else str(value))


def seed_span(seeds: Sequence[int]) -> str:
    """'seed 5', 'seeds 1-4', 'seeds 1, 3-4': how train and report name a set of seeds."""
    ordered = sorted(set(seeds))
    runs: list[list[int]] = []
    for seed in ordered:
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    text = ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)
    return f"seed{'s' if len(ordered) != 1 else ''} {text}"


def stored_run(conn, ident: RunIdentity, source: GenerationSource | None, seed: int, fingerprint: str,
               config: dict, profile: bool) -> str | None:
    """The newest stored run that is the same run as one of `ident` from `source` (None: a run
    that read no generations) with this seed, data fingerprint and `config` (a run's stored
    config, or a TrainConfig as a dict); None when there is none."""
    rows = conn.execute(
        "SELECT r.run_id, r.config FROM runs r LEFT JOIN run_sources s USING (run_id) "
        "WHERE r.model = ? AND r.dataset = ? AND r.variant = ? AND r.features = ? AND r.ng_k = ? AND r.seed = ? "
        "AND r.data_fingerprint = ? AND s.llm IS NOT DISTINCT FROM ? AND s.prompt_set IS NOT DISTINCT FROM ? "
        "AND s.method IS NOT DISTINCT FROM ? ORDER BY r.created_at DESC, r.run_id DESC",
        [ident.model, ident.dataset, ident.variant, ident.features, ident.ng_k, seed, fingerprint,
         *((source.llm, source.prompt_set, source.method) if source is not None else (None, None, None))],
    ).fetchall()
    wanted = settings_of(config, ident.model, profile)
    return next((str(run_id) for run_id, stored in rows
                 if settings_of(json.loads(stored), ident.model, profile) == wanted), None)
