"""Scoring feature rows: model artifacts, the `Scorer` protocol and its implementations."""

from bidder.scoring.artifacts import ModelArtifact, ModelFormat, identify, load_model_artifact
from bidder.scoring.base import Scorer, Scores
from bidder.scoring.embedded import EmbeddedScorer

__all__ = [
    "EmbeddedScorer",
    "ModelArtifact",
    "ModelFormat",
    "Scorer",
    "Scores",
    "identify",
    "load_model_artifact",
]
