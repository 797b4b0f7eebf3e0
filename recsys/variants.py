"""GENRE dataset variants: what a variant is, and the plain rows it is built from.

- original: news and impressions as imported
- ns: the latest valid enhanced title replaces each news title (news without one keep theirs)
- up: user profiles (topics, regions) for interest fusion
- ng: the first K synthetic news (by position) of each cold user appended to the end of the
  history, as the most recent reads; the synthetic news join the variant's news table
- chain: ng with news written by the chain-based generator
Combinations join with '+', e.g. ns+up+ng.

recsys never reads a database: an application fills `VariantRows` from its own storage
(genre-local: genre_local/store/variants.py) and hands them to `recsys.data.encode_variant`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from recsys.catalog import VARIANT_PARTS
from recsys.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

    from recsys.features import NewsRows

PARTS: tuple[str, ...] = VARIANT_PARTS


@dataclass(frozen=True)
class VariantSpec:
    ns: bool = False
    up: bool = False
    ng_source: str | None = None  # 'news' (ng) or 'chain' (chain); None: no synthetic news
    ng_k: int = 0

    @property
    def name(self) -> str:
        parts = [p for p, on in (("ns", self.ns), ("up", self.up)) if on]
        if self.ng_source:
            parts.append("ng" if self.ng_source == "news" else "chain")
        return "+".join(parts) or "original"

    def key(self) -> str:
        return json.dumps({"ns": self.ns, "up": self.up, "ng": self.ng_source, "k": self.ng_k}, sort_keys=True)


def parse_variant(text: str, ng_k: int = 2) -> VariantSpec:
    """'ns+up+ng' -> VariantSpec; ConfigError (key 'variant' or 'ng_k') on unknown or conflicting parts."""
    parts = [p.strip().lower() for p in text.split("+") if p.strip()]
    if not parts:
        raise ConfigError("variant", "is empty; use original, ns, up, ng, chain or a combination like ns+up+ng")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ConfigError(
            "variant", f"has an unknown part '{unknown[0]}' (use original, ns, up, ng, chain or combinations like ns+up+ng)"
        )
    if "original" in parts and len(parts) > 1:
        raise ConfigError("variant", f"{text}: 'original' cannot be combined with other parts")
    if "ng" in parts and "chain" in parts:
        raise ConfigError("variant", f"{text}: use either ng (one-pass news) or chain (chain-generated news), not both")
    if ng_k < 0:
        raise ConfigError("ng_k", f"must be 0 or more, got {ng_k}")
    source = "news" if "ng" in parts else "chain" if "chain" in parts else None
    return VariantSpec(ns="ns" in parts, up="up" in parts, ng_source=source, ng_k=ng_k if source else 0)


@dataclass(frozen=True)
class ProfileVocabulary:
    """The label sets user profiles draw from (GENRE: 19 interest topics, US states as regions).

    They travel with the rows and the encoded dataset, so models size their lookups from the
    data, not from an application's constants. Matching is case-insensitive for regions."""

    topics: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()


@dataclass
class VariantRows:
    """Everything a variant needs, read by the application in one short session."""

    dataset: str
    spec: VariantSpec
    news: NewsRows
    impressions: pa.Table  # split, impression_id, user_id, history, original_history_len, candidates, labels
    profiles: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # user -> (topics, regions)
    stats: dict[str, int] = field(default_factory=dict)
    vocabulary: ProfileVocabulary = field(default_factory=ProfileVocabulary)
