"""Feature vectors: the versioned spec, stable hashing and the vectorizer."""

from bidder.features.hashing import stable_hash
from bidder.features.sources import SOURCES, Source
from bidder.features.spec import (
    FEATURE_SPEC_FILENAME,
    Feature,
    FeatureSpec,
    HashEncoding,
    NumericEncoding,
    VocabularyEncoding,
)
from bidder.features.vectorizer import Rows, Vectorizer

__all__ = [
    "FEATURE_SPEC_FILENAME",
    "SOURCES",
    "Feature",
    "FeatureSpec",
    "HashEncoding",
    "NumericEncoding",
    "Rows",
    "Source",
    "Vectorizer",
    "VocabularyEncoding",
    "stable_hash",
]
