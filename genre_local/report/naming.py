"""How the report spells and orders the catalog's names: models, variants, feature sets.

The names themselves come from recsys.catalog; this module only canonicalizes what the store
holds ('up+ns' and 'ns+up' are one variant) and sorts it in the paper's order.
"""

from __future__ import annotations

from recsys.catalog import MODEL_NAMES, NEWS_FEATURES, VARIANT_PARTS, model_kind


# GENRE's schemes: scheme -> (generation tasks whose outputs and cost it carries, training variant
# it feeds). The chain scheme reads the profiler's output as well as the chain generator's (paper
# §4.6: its CCR drops "due to the use of the expensive user profiler").
SCHEMES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("NS", ("summarize",), "ns"),
    ("UP", ("profile",), "up"),
    ("NG", ("news",), "ng"),
    ("chain", ("profile", "chain"), "chain"),
)


def variant_tasks(variant: str) -> tuple[str, ...]:
    """The generation tasks whose outputs a (canonical) variant reads, in scheme order."""
    parts = set(variant.split("+"))
    tasks = [t for _, scheme_tasks, part in SCHEMES if part in parts for t in scheme_tasks]
    return tuple(dict.fromkeys(tasks))


def kind_of(model: str) -> str:
    """'matching' or 'ranking'; 'other' for a model the catalog does not know (the report still
    shows what the store holds rather than failing on it)."""
    try:
        return model_kind(model)
    except ValueError:
        return "other"


def model_sort_key(model: str) -> tuple[int, str]:
    return (MODEL_NAMES.index(model) if model in MODEL_NAMES else len(MODEL_NAMES), model)


def canonical_variant(text: str) -> str:
    """'up+ns' and 'ns+up' are the same variant; spell it in the paper's order."""
    parts = {p.strip().lower() for p in text.split("+") if p.strip()}
    parts.discard("original")
    ordered = [p for p in VARIANT_PARTS if p in parts] + sorted(parts - set(VARIANT_PARTS))
    return "+".join(ordered) or "original"


def variant_sort_key(variant: str) -> tuple[int, int, str]:
    parts = variant.split("+")
    first = VARIANT_PARTS.index(parts[0]) if parts[0] in VARIANT_PARTS else len(VARIANT_PARTS)
    return (0 if variant == "original" else len(parts), first, variant)


def has_synthetic_news(variant: str) -> bool:
    return bool({"ng", "chain"} & set(variant.split("+")))


def canonical_features(text: str) -> str:
    """'category, title' -> 'title,category' (fixed order, duplicates dropped)."""
    parts = {p.strip().lower() for p in text.split(",") if p.strip()}
    ordered = [f for f in NEWS_FEATURES if f in parts] + sorted(parts - set(NEWS_FEATURES))
    return ",".join(ordered)
