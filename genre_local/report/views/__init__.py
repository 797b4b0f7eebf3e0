"""Every view the report renders, in the order it renders them: one module per paper table or
figure, each declaring one `VIEW` (see report/view.py). A new view is a module listed here."""

from __future__ import annotations

from genre_local.report.view import View
from genre_local.report.views import (
    chain, cost, enrichment, epoch_curves, feature_ablation, ng_k, profile_fidelity, user_groups, variants,
)

VIEWS: tuple[View, ...] = (
    enrichment.VIEW,
    variants.VIEW,
    user_groups.VIEW,
    ng_k.VIEW,
    chain.VIEW,
    feature_ablation.VIEW,
    cost.VIEW,
    profile_fidelity.VIEW,
    epoch_curves.VIEW,
)
