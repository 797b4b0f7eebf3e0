"""Layers shared by the recommender zoo; each model is a composition of these."""

from recsys.layers.attention import AdditiveAttention, MultiHeadSelfAttention, masked_mean, masked_softmax
from recsys.layers.cnn import CNNTextEncoder
from recsys.layers.dropout import Dropout
from recsys.layers.fusion import InterestFusion
from recsys.layers.interaction import MLP, CrossNetwork, DINActivationUnit, InnerProductLayer
from recsys.layers.news_embedding import NewsFeatureEmbedder
from recsys.layers.word_embedding import WordEmbedding

__all__ = [
    "MLP",
    "AdditiveAttention",
    "CNNTextEncoder",
    "CrossNetwork",
    "DINActivationUnit",
    "Dropout",
    "InnerProductLayer",
    "InterestFusion",
    "MultiHeadSelfAttention",
    "NewsFeatureEmbedder",
    "WordEmbedding",
    "masked_mean",
    "masked_softmax",
]
