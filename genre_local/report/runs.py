"""Stored runs indexed by configuration and seed, and their summaries over seeds.

A "configuration" of a run is (model, variant, ng_k, features, generation source); its seeds
are repeats. The source ("LLM/prompt set", empty for `original` and for runs stored before
migration 006) keeps runs on two LLMs' outputs apart. Each
view compares configurations over the seeds they have, on the split the run was evaluated on
(test when stored, otherwise dev). The settings a run was trained with (epochs, lr, ...) are not
part of its configuration: the newest run of a seed counts whatever its settings, and
`RunIndex.settings_note` says where the runs behind one number, or behind two numbers compared,
were trained with other settings (genre_local/run_match.py compared_settings).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from recsys.catalog import USER_GROUPS
from recsys.stats import mean_std, paired_p_value

from genre_local.report.naming import (
    canonical_features,
    canonical_variant,
    has_synthetic_news,
    model_sort_key,
    variant_sort_key,
)
from genre_local.run_match import compared_settings, differing_settings, seed_span, setting_value
from genre_local.store.results import MetricRow

# Every impression; users with no history; a short history (1..5, GENRE Table 6); a longer one.
ALL_USERS, EMPTY_USERS, NEW_USERS, WARM_USERS = USER_GROUPS


@dataclass(frozen=True)
class Summary:
    """One metric of one configuration over its seeds; mean and sample std from recsys.stats."""

    values: dict[int, float]  # seed -> value

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return mean_std(list(self.values.values()))[0]

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n-1); None with a single seed, where it is undefined."""
        return mean_std(list(self.values.values()))[1]


def seed_p_value(base: Summary, other: Summary) -> float | None:
    """recsys.stats.paired_p_value over the seeds both sides have (other vs base); None below 2."""
    seeds = sorted(set(base.values) & set(other.values))
    return paired_p_value([other.values[s] for s in seeds], [base.values[s] for s in seeds])


@dataclass(frozen=True)
class ConfigKey:
    model: str
    variant: str
    ng_k: int
    features: str
    source: str = ""  # the generation source's label (GenerationSource.label); "" for none recorded


@dataclass
class RunIndex:
    """configuration -> seed -> (group, metric) -> value, and which run and split each came from."""

    runs: dict[ConfigKey, dict[int, dict[tuple[str, str], float]]] = field(default_factory=dict)
    splits: dict[ConfigKey, set[str]] = field(default_factory=dict)
    run_ids: dict[ConfigKey, dict[int, str | None]] = field(default_factory=dict)  # the run each seed's values are from
    seed_splits: dict[ConfigKey, dict[int, str]] = field(default_factory=dict)  # the split each seed reports
    # the older runs of a seed trained more than once (train --retrain, or other settings): left out
    superseded: dict[ConfigKey, dict[int, tuple[str, ...]]] = field(default_factory=dict)
    # the settings each seed's run was trained with (run_match.compared_settings of its config)
    settings: dict[ConfigKey, dict[int, dict]] = field(default_factory=dict)

    def summary(self, key: ConfigKey, metric: str, group: str = ALL_USERS) -> Summary | None:
        seeds = self.runs.get(key, {})
        values = {s: m[(group, metric)] for s, m in seeds.items() if (group, metric) in m}
        return Summary(values) if values else None

    def keys(self) -> list[ConfigKey]:
        return sorted(
            self.runs,
            key=lambda k: (model_sort_key(k.model), variant_sort_key(k.variant), k.ng_k, k.features, k.source),
        )

    def models(self) -> list[str]:
        return sorted({k.model for k in self.runs}, key=model_sort_key)

    def variants(self) -> list[str]:
        return sorted({k.variant for k in self.runs}, key=variant_sort_key)

    def sources(self, variant: str) -> list[str]:
        """The generation sources runs of `variant` read, sorted ("" first: none recorded)."""
        return sorted({k.source for k in self.runs if k.variant == variant})

    def superseded_runs(self) -> int:
        """How many stored runs no number comes from: each configuration and seed counts its newest run."""
        return sum(len(runs) for seeds in self.superseded.values() for runs in seeds.values())

    def settings_note(self, keys: Iterable[ConfigKey | None]) -> str | None:
        """Where the runs behind `keys` (the configurations of one number, or of numbers compared
        with each other, of one model) were not all trained with the same settings: each setting
        that differs, its values and the runs of each, e.g. "nrms original vs ns: lr 0.001
        (original seeds 1-5, ns seeds 1-4) vs 0.0001 (ns seed 5)". None when they all agree.
        Configurations of several models get one such note per model, joined with " | "."""
        chosen = [k for k in dict.fromkeys(keys) if k is not None and k in self.settings]
        notes = [_model_settings_note(self, [k for k in chosen if k.model == model])
                 for model in dict.fromkeys(k.model for k in chosen)]
        return " | ".join(n for n in notes if n) or None

    def split_label(self) -> str:
        """Every evaluation split the indexed runs report, e.g. 'dev' or 'dev/test'; '-' for none."""
        splits = set().union(*self.splits.values()) if self.splits else set()
        return "/".join(sorted(splits)) or "-"


def index_runs(rows: list[MetricRow]) -> RunIndex:
    """Group rows per configuration and seed, keeping one evaluation split per run.

    A run reports test when it stored test metrics, otherwise dev (issue 4 §5). When a seed
    was trained twice, the newest run's values win.
    """
    by_run: dict[tuple[ConfigKey, int], list[MetricRow]] = defaultdict(list)
    for row in rows:
        variant = canonical_variant(row.variant)
        key = ConfigKey(
            model=row.model.lower(),
            variant=variant,
            ng_k=int(row.ng_k) if has_synthetic_news(variant) else 0,
            features=canonical_features(row.features),
            source=(row.source or "") if variant != "original" else "",
        )
        by_run[(key, int(row.seed))].append(row)
    index = RunIndex()
    for (key, seed), seed_rows in by_run.items():
        run_rows = _newest_run(seed_rows)
        older = tuple(sorted({str(r.run_id) for r in seed_rows} - {str(run_rows[0].run_id)}))
        if older:
            index.superseded.setdefault(key, {})[seed] = older
        splits = {r.split for r in run_rows}
        split = "test" if "test" in splits else ("dev" if "dev" in splits else sorted(splits)[0])
        metrics = {(r.group, r.metric): float(r.value) for r in run_rows if r.split == split}
        index.runs.setdefault(key, {})[seed] = metrics
        index.splits.setdefault(key, set()).add(split)
        index.run_ids.setdefault(key, {})[seed] = run_rows[0].run_id
        index.seed_splits.setdefault(key, {})[seed] = split
        config = json.loads(run_rows[0].config) if run_rows[0].config else {}
        index.settings.setdefault(key, {})[seed] = compared_settings(config, key.model)
    return index


def _model_settings_note(index: RunIndex, keys: list[ConfigKey]) -> str | None:
    """RunIndex.settings_note for configurations of one model."""
    runs = [(key, seed, settings) for key in keys for seed, settings in sorted(index.settings[key].items())]
    names = differing_settings([settings for _, _, settings in runs])
    if not names:
        return None
    labels = _config_labels(keys)
    one = len(keys) == 1
    parts = []
    for name in names:
        by_value: dict[str, dict[ConfigKey, list[int]]] = {}
        for key, seed, settings in runs:
            by_value.setdefault(setting_value(settings, name), {}).setdefault(key, []).append(seed)
        values = [f"{value} (" + ", ".join(seed_span(seeds) if one else f"{labels[key]} {seed_span(seeds)}"
                                            for key, seeds in holders.items()) + ")"
                  for value, holders in by_value.items()]
        parts.append(f"{name} " + " vs ".join(values))
    return f"{keys[0].model} {' vs '.join(labels[k] for k in keys)}: " + "; ".join(parts)


def _config_labels(keys: list[ConfigKey]) -> dict[ConfigKey, str]:
    """How a settings note names each configuration: its variant, K, generation source, and its
    feature set where the configurations' feature sets differ."""
    features = len({k.features for k in keys}) > 1
    return {k: k.variant + (f" K={k.ng_k}" if k.ng_k else "") + (f" · {k.source}" if k.source else "")
            + (f" [{k.features}]" if features else "") for k in keys}


def _newest_run(rows: list[MetricRow]) -> list[MetricRow]:
    """The rows of the most recently created run among those of one configuration and seed.

    Whole runs are kept or dropped, never mixed: a retrained seed whose new-user metric is
    missing must not borrow the old run's value.
    """
    runs: dict[str | None, list[MetricRow]] = defaultdict(list)
    for row in rows:
        runs[row.run_id].append(row)
    if len(runs) == 1:
        return rows

    def age(item: tuple[str | None, list[MetricRow]]) -> tuple:
        stamps = [r.created_at for r in item[1] if r.created_at is not None]
        return (bool(stamps), max(stamps) if stamps else 0, item[0] or "")

    return max(runs.items(), key=age)[1]


def main_features(index: RunIndex, default: str) -> str | None:
    """The feature set the main tables use: the configured default when stored, else the commonest."""
    counts: dict[str, int] = defaultdict(int)
    for key in index.runs:
        counts[key.features] += 1
    if not counts:
        return None
    default = canonical_features(default)
    if default in counts:
        return default
    return max(sorted(counts), key=lambda f: counts[f])


def main_key(index: RunIndex, model: str, variant: str, features: str, default_k: int,
             source: str | None = None) -> ConfigKey | None:
    """The configuration standing for (model, variant) in the main tables.

    For variants with synthetic news several K may be stored (Fig. 7); the tables use the
    configured K when stored, else the largest (the paper's tables use K=2, its largest).
    `source` picks the generation source; None takes the first stored one in sorted order (the
    views that are not per source; the variants and cost views ask for each source).
    """
    keys = [k for k in index.runs if (k.model, k.variant, k.features) == (model, variant, features)
            and (source is None or k.source == source)]
    if not keys:
        return None
    chosen = min(k.source for k in keys)
    keys = [k for k in keys if k.source == chosen]
    if not has_synthetic_news(variant):
        key = ConfigKey(model, variant, 0, features, chosen)
        return key if key in index.runs else None
    ks = sorted(k.ng_k for k in keys)
    k = default_k if default_k in ks else ks[-1]
    return ConfigKey(model, variant, k, features, chosen)
