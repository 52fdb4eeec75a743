"""The bidder's exception hierarchy.

Every error the bidder raises on purpose derives from `BidderError`. Errors that reach an
exchange carry the HTTP status they are answered with; errors of the model carry the no-bid
reason they are counted under, because a failing model never turns into a 5xx.

    BidderError
    ├── RequestError                 answered to the caller with `status_code`
    │   ├── InvalidRequest           400, names the offending field path
    │   ├── LengthRequired           411, neither Content-Length nor chunked encoding
    │   ├── PayloadTooLarge          413, body or decompressed body over the limit
    │   └── UnsupportedMediaType     415, not `application/json`
    ├── ConfigurationError           a bad setting or artifact, refused at start-up
    │   ├── ModelLoadError           a model artifact that cannot be read safely
    │   └── FeatureSpecError         a feature spec that is malformed or does not fit the model
    ├── ReloadRefused                422, a new model that failed to load, check or warm up;
    │                                the old one keeps serving
    └── ScoringError                 the model could not score; the request gets a no-bid
"""

from __future__ import annotations


class BidderError(Exception):
    """Base of every error the bidder raises deliberately."""


class RequestError(BidderError):
    """A request the bidder refuses; `status_code` is the HTTP answer."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(RequestError):
    """The body is not a valid OpenRTB bid request; the message starts with the field path."""

    status_code = 400

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class LengthRequired(RequestError):
    status_code = 411


class PayloadTooLarge(RequestError):
    status_code = 413


class UnsupportedMediaType(RequestError):
    status_code = 415


class ConfigurationError(BidderError):
    """A setting or artifact that the bidder refuses to start with."""


class ModelLoadError(ConfigurationError):
    """A model artifact that is missing, unsupported or cannot be read safely."""


class FeatureSpecError(ConfigurationError):
    """A feature spec that is malformed or inconsistent with its model."""


class ReloadRefused(BidderError):
    """A model reload that was refused; the model already serving goes on serving."""

    status_code = 422


class ScoringError(BidderError):
    """The model failed to score a batch; `reason` is the no-bid reason it is counted under."""

    def __init__(self, message: str, reason: str = "model_error") -> None:
        super().__init__(message)
        self.reason = reason
