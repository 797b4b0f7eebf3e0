"""Layers shared by the recommender zoo; each model is a composition of these."""

from recsys.layers.attention import AdditiveAttention, MultiHeadSelfAttention, masked_mean, masked_softmax
from recsys.layers.cnn import CNNTextEncoder
from recsys.layers.fusion import InterestFusion
from recsys.layers.interaction import MLP, CrossNetwork, DINActivationUnit, InnerProductLayer
from recsys.layers.news_embedding import NewsFeatureEmbedder

__all__ = [
    "MLP",
    "AdditiveAttention",
    "CNNTextEncoder",
    "CrossNetwork",
    "DINActivationUnit",
    "InnerProductLayer",
    "InterestFusion",
    "MultiHeadSelfAttention",
    "NewsFeatureEmbedder",
    "masked_mean",
    "masked_softmax",
]
