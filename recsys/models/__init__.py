"""The GENRE recommender zoo: eight models behind one interface (see base.py)."""

from recsys.models.base import (
    MODEL_NAMES,
    FeatureSizes,
    MatchingModel,
    ModelConfig,
    NewsRecommender,
    RankingModel,
    build_model,
)

__all__ = [
    "MODEL_NAMES",
    "FeatureSizes",
    "MatchingModel",
    "ModelConfig",
    "NewsRecommender",
    "RankingModel",
    "build_model",
]
