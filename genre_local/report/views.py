"""GENRE's result views (paper §4, Tables 3-8, Figs 6-7) as pure functions of stored rows.

A "configuration" of a run is (model, variant, ng_k, features); its seeds are repeats. Each
view compares configurations over the seeds they have, on the split the run was evaluated on
(test when stored, otherwise dev).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from genre_local.report.rows import (
    METRICS,
    FidelityRow,
    GenerationRunRow,
    MetricRow,
    canonical_features,
    canonical_variant,
    has_synthetic_news,
    model_kind,
    model_sort_key,
    variant_sort_key,
)

ALL = "all"
USER_GROUPS: tuple[str, ...] = ("new", "warm")


# --------------------------------------------------------------------------------------------
# Seeds -> mean, std, paired test
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    """One metric of one configuration over its seeds."""

    values: dict[int, float]  # seed -> value

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return math.fsum(self.values.values()) / len(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n-1); None with a single seed, where it is undefined."""
        if len(self.values) < 2:
            return None
        mean = self.mean
        return math.sqrt(math.fsum((v - mean) ** 2 for v in self.values.values()) / (len(self.values) - 1))


def paired_p_value(base: Summary, other: Summary) -> float | None:
    """Two-sided paired t-test over the seeds both have; None below 2 pairs.

    Constant differences leave t undefined; like `genre-local train` (recsys/experiment.py) the
    report calls that 1.0 when the two sides are equal and 0.0 when they differ by a constant,
    so the two commands never disagree about a p-value.
    """
    seeds = sorted(set(base.values) & set(other.values))
    if len(seeds) < 2:
        return None
    import numpy as np
    from scipy import stats

    ours = np.array([other.values[s] for s in seeds], dtype=float)
    theirs = np.array([base.values[s] for s in seeds], dtype=float)
    diffs = ours - theirs
    if np.allclose(diffs, diffs[0]):
        return 1.0 if np.allclose(ours, theirs) else 0.0
    p = float(stats.ttest_rel(ours, theirs).pvalue)
    return None if math.isnan(p) else p


# --------------------------------------------------------------------------------------------
# Index: configuration -> seed -> (group, metric) -> value
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfigKey:
    model: str
    variant: str
    ng_k: int
    features: str


@dataclass
class RunIndex:
    runs: dict[ConfigKey, dict[int, dict[tuple[str, str], float]]] = field(default_factory=dict)
    splits: dict[ConfigKey, set[str]] = field(default_factory=dict)

    def summary(self, key: ConfigKey, metric: str, group: str = ALL) -> Summary | None:
        seeds = self.runs.get(key, {})
        values = {s: m[(group, metric)] for s, m in seeds.items() if (group, metric) in m}
        return Summary(values) if values else None

    def keys(self) -> list[ConfigKey]:
        return sorted(
            self.runs,
            key=lambda k: (model_sort_key(k.model), variant_sort_key(k.variant), k.ng_k, k.features),
        )

    def models(self) -> list[str]:
        return sorted({k.model for k in self.runs}, key=model_sort_key)

    def variants(self) -> list[str]:
        return sorted({k.variant for k in self.runs}, key=variant_sort_key)


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
        )
        by_run[(key, int(row.seed))].append(row)
    index = RunIndex()
    for (key, seed), seed_rows in by_run.items():
        run_rows = _newest_run(seed_rows)
        splits = {r.split for r in run_rows}
        split = "test" if "test" in splits else ("dev" if "dev" in splits else sorted(splits)[0])
        metrics = {(r.group, r.metric): float(r.value) for r in run_rows if r.split == split}
        index.runs.setdefault(key, {})[seed] = metrics
        index.splits.setdefault(key, set()).add(split)
    return index


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


def main_key(index: RunIndex, model: str, variant: str, features: str, default_k: int) -> ConfigKey | None:
    """The configuration standing for (model, variant) in the main tables.

    For variants with synthetic news several K may be stored (Fig. 7); the tables use the
    configured K when stored, else the largest (the paper's tables use K=2, its largest).
    """
    if not has_synthetic_news(variant):
        key = ConfigKey(model, variant, 0, features)
        return key if key in index.runs else None
    ks = sorted(k.ng_k for k in index.runs if (k.model, k.variant, k.features) == (model, variant, features))
    if not ks:
        return None
    k = default_k if default_k in ks else ks[-1]
    return ConfigKey(model, variant, k, features)


# --------------------------------------------------------------------------------------------
# Tables 3-5 (and combinations): original vs a variant
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """Baseline vs variant on one metric of one model (and user group)."""

    model: str
    group: str
    metric: str
    base_key: ConfigKey
    other_key: ConfigKey
    base: Summary
    other: Summary

    @property
    def kind(self) -> str:
        return model_kind(self.model)

    @property
    def improvement(self) -> float:
        return self.other.mean - self.base.mean

    @property
    def improvement_pct(self) -> float | None:
        return None if self.base.mean == 0 else 100.0 * self.improvement / self.base.mean

    @property
    def p_value(self) -> float | None:
        return paired_p_value(self.base, self.other)


@dataclass(frozen=True)
class VariantTable:
    variant: str
    comparisons: list[Comparison]

    def models(self) -> list[str]:
        return sorted({c.model for c in self.comparisons}, key=model_sort_key)


def compare(index: RunIndex, base: ConfigKey, other: ConfigKey, group: str = ALL) -> list[Comparison]:
    out = []
    for metric in METRICS:
        b = index.summary(base, metric, group)
        o = index.summary(other, metric, group)
        if b is not None and o is not None:
            out.append(Comparison(base.model, group, metric, base, other, b, o))
    return out


def variant_tables(index: RunIndex, features: str, default_k: int) -> list[VariantTable]:
    """One table per stored variant: every model that has it and `original` (Tables 3, 4, 5)."""
    tables = []
    for variant in index.variants():
        if variant == "original":
            continue
        comparisons: list[Comparison] = []
        for model in index.models():
            base = main_key(index, model, "original", features, default_k)
            other = main_key(index, model, variant, features, default_k)
            if base and other:
                comparisons.extend(compare(index, base, other))
        if comparisons:
            tables.append(VariantTable(variant, comparisons))
    return tables


# --------------------------------------------------------------------------------------------
# Table 6: new vs warm users
# --------------------------------------------------------------------------------------------
def user_group_table(index: RunIndex, features: str, default_k: int) -> list[Comparison]:
    """original vs ng (and chain) per model for new users (history <= 5) and warm users."""
    out = []
    for variant in ("ng", "chain"):
        for model in index.models():
            base = main_key(index, model, "original", features, default_k)
            other = main_key(index, model, variant, features, default_k)
            if base and other:
                for group in USER_GROUPS:
                    out.extend(compare(index, base, other, group))
    return out


# --------------------------------------------------------------------------------------------
# Fig. 7: number of synthetic news per cold user
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CurvePoint:
    model: str
    ng_k: int
    metric: str
    summary: Summary
    source: str  # 'ng' or 'original' (K = 0 taken from the original runs)


def ng_k_curve(index: RunIndex, features: str) -> list[CurvePoint]:
    """Metric vs K for the one-pass `ng` variant; K=0 is `ng --ng-k 0` when stored, else original.

    Only models with at least two K values appear: a single point is no curve.
    """
    out: list[CurvePoint] = []
    for model in index.models():
        points: dict[int, tuple[ConfigKey, str]] = {}
        for key in index.runs:
            if (key.model, key.variant, key.features) == (model, "ng", features):
                points[key.ng_k] = (key, "ng")
        original = ConfigKey(model, "original", 0, features)
        if 0 not in points and original in index.runs:
            points[0] = (original, "original")
        if len(points) < 2:
            continue
        for k in sorted(points):
            key, source = points[k]
            for metric in METRICS:
                summary = index.summary(key, metric)
                if summary is not None:
                    out.append(CurvePoint(model, k, metric, summary, source))
    return out


# --------------------------------------------------------------------------------------------
# Table 7: chain-based vs one-pass generation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainRow:
    model: str
    metric: str
    original: Summary
    one_pass: Summary | None
    chain: Summary

    @property
    def one_pass_improvement(self) -> float | None:
        return None if self.one_pass is None else self.one_pass.mean - self.original.mean

    @property
    def chain_improvement(self) -> float:
        return self.chain.mean - self.original.mean

    @property
    def chain_vs_one_pass_p(self) -> float | None:
        return None if self.one_pass is None else paired_p_value(self.one_pass, self.chain)


def chain_table(index: RunIndex, features: str, default_k: int) -> list[ChainRow]:
    out = []
    for model in index.models():
        base = main_key(index, model, "original", features, default_k)
        chain = main_key(index, model, "chain", features, default_k)
        if not (base and chain):
            continue
        one_pass = main_key(index, model, "ng", features, default_k)
        for metric in METRICS:
            b, c = index.summary(base, metric), index.summary(chain, metric)
            if b is None or c is None:
                continue
            o = index.summary(one_pass, metric) if one_pass else None
            out.append(ChainRow(model, metric, b, o, c))
    return out


# --------------------------------------------------------------------------------------------
# Fig. 6: news-feature ablation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AblationRow:
    model: str
    variant: str
    features: str
    metric: str
    summary: Summary


def feature_ablation(index: RunIndex, default_k: int) -> list[AblationRow]:
    """Every (model, variant) trained with two or more feature sets, each set's metrics."""
    out = []
    for model in index.models():
        for variant in index.variants():
            feature_sets = sorted({k.features for k in index.runs if (k.model, k.variant) == (model, variant)},
                                  key=lambda f: (len(f.split(",")), f))
            if len(feature_sets) < 2:
                continue
            for features in feature_sets:
                key = main_key(index, model, variant, features, default_k)
                if key is None:
                    continue
                for metric in METRICS:
                    summary = index.summary(key, metric)
                    if summary is not None:
                        out.append(AblationRow(model, variant, features, metric, summary))
    return out


# --------------------------------------------------------------------------------------------
# Table 8: cost and cost conversion rate
# --------------------------------------------------------------------------------------------
# scheme -> (generation tasks whose cost it carries, training variant it feeds). The chain
# scheme pays for the profiler as well as the chain generator (paper §4.6: its CCR drops
# "due to the use of the expensive user profiler").
SCHEMES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("NS", ("summarize",), "ns"),
    ("UP", ("profile",), "up"),
    ("NG", ("news",), "ng"),
    ("chain", ("profile", "chain"), "chain"),
)


@dataclass(frozen=True)
class CostRow:
    scheme: str
    tasks: tuple[str, ...]
    variant: str
    runs: int
    models: tuple[str, ...]  # LLMs that generated
    requests: int
    valid: int
    invalid: int
    prompt_tokens: int
    completion_tokens: int
    engine_seconds: float
    wall_seconds: float  # task wall time plus the engine start-up charged to it
    money: float | None  # sum of `cost` when every run had a price
    matching_improvement: float | None  # mean AUC gain over original, matching models
    matching_models: int
    ranking_improvement: float | None
    ranking_models: int
    unit: str  # what one unit of cost is: 'price' or 'engine-hour'

    @property
    def engine_hours(self) -> float:
        return self.engine_seconds / 3600.0

    @property
    def cost_units(self) -> float:
        return self.money if self.unit == "price" and self.money is not None else self.engine_hours

    def ccr(self, improvement: float | None) -> float | None:
        """AUC improvement per unit of cost; None when either side is missing or cost is 0."""
        if improvement is None or self.cost_units <= 0:
            return None
        return improvement / self.cost_units

    @property
    def matching_ccr(self) -> float | None:
        return self.ccr(self.matching_improvement)

    @property
    def ranking_ccr(self) -> float | None:
        return self.ccr(self.ranking_improvement)


def _mean_auc_gain(index: RunIndex, variant: str, kind: str, features: str | None, default_k: int) -> tuple[float | None, int]:
    if features is None:
        return None, 0
    gains = []
    for model in index.models():
        if model_kind(model) != kind:
            continue
        base = main_key(index, model, "original", features, default_k)
        other = main_key(index, model, variant, features, default_k)
        b = index.summary(base, "auc") if base else None
        o = index.summary(other, "auc") if other else None
        if b is not None and o is not None:
            gains.append(o.mean - b.mean)
    return (math.fsum(gains) / len(gains) if gains else None), len(gains)


def cost_table(
    runs: list[GenerationRunRow], index: RunIndex, features: str | None, default_k: int
) -> list[CostRow]:
    """Per GENRE scheme: what generating its data cost, what it gained, and the ratio (CCR).

    Costs are in money only when every generation run of the dataset had a price per hour,
    so all schemes share one unit; otherwise in hours of engine time.
    """
    relevant = [r for r in runs if any(r.task in tasks for _, tasks, _ in SCHEMES)]
    unit = "price" if relevant and all(r.cost is not None for r in relevant) else "engine-hour"
    out = []
    for scheme, tasks, variant in SCHEMES:
        picked = [r for r in runs if r.task in tasks]
        if not picked:
            continue
        m_gain, m_n = _mean_auc_gain(index, variant, "matching", features, default_k)
        r_gain, r_n = _mean_auc_gain(index, variant, "ranking", features, default_k)
        out.append(CostRow(
            scheme=scheme,
            tasks=tuple(t for t in tasks if any(r.task == t for r in picked)),
            variant=variant,
            runs=len(picked),
            models=tuple(sorted({r.model for r in picked})),
            requests=sum(r.requests for r in picked),
            valid=sum(r.valid for r in picked),
            invalid=sum(r.invalid for r in picked),
            prompt_tokens=sum(r.prompt_tokens for r in picked),
            completion_tokens=sum(r.completion_tokens for r in picked),
            engine_seconds=math.fsum(r.engine_seconds for r in picked),
            wall_seconds=math.fsum(r.wall_seconds + r.startup_seconds for r in picked),
            money=math.fsum(r.cost for r in picked) if all(r.cost is not None for r in picked) else None,
            matching_improvement=m_gain,
            matching_models=m_n,
            ranking_improvement=r_gain,
            ranking_models=r_n,
            unit=unit,
        ))
    return out


def fidelity_rows(rows: list[FidelityRow]) -> list[FidelityRow]:
    """Profile fidelity runs, oldest first (each generate --task profile round stores one)."""
    return sorted(rows, key=lambda r: (r.created_at is not None, r.created_at or 0, r.run_id, r.round))
