"""bidder: a low-latency OpenRTB bidder scoring with an embedded or SageMaker-hosted model.

The public API, re-exported here, follows a bid request's path through the system:
`decode_bid_request` → `Vectorizer` → a `Scorer` → `BidPolicy` → `encode_bid_response`,
served by `create_app` and configured by `Settings`.
"""

__version__ = "0.1.0"

from bidder.decision import BidPolicy, CreativeCatalog, LinearPricing, NoBidReason
from bidder.errors import (
    BidderError,
    ConfigurationError,
    FeatureSpecError,
    InvalidRequest,
    ModelLoadError,
    PayloadTooLarge,
    RequestError,
    ScoringError,
    UnsupportedMediaType,
)
from bidder.features import FeatureSpec, Vectorizer
from bidder.openrtb import BidRequest, BidResponse, decode_bid_request, encode_bid_response
from bidder.scoring import EmbeddedScorer, ModelArtifact, Scorer, load_model_artifact
from bidder.server import BidderApp, create_app
from bidder.settings import Settings, load_settings

__all__ = [
    "BidPolicy",
    "BidRequest",
    "BidResponse",
    "BidderApp",
    "BidderError",
    "ConfigurationError",
    "CreativeCatalog",
    "EmbeddedScorer",
    "FeatureSpec",
    "FeatureSpecError",
    "InvalidRequest",
    "LinearPricing",
    "ModelArtifact",
    "ModelLoadError",
    "NoBidReason",
    "PayloadTooLarge",
    "RequestError",
    "Scorer",
    "ScoringError",
    "Settings",
    "UnsupportedMediaType",
    "Vectorizer",
    "__version__",
    "create_app",
    "decode_bid_request",
    "encode_bid_response",
    "load_model_artifact",
    "load_settings",
]
