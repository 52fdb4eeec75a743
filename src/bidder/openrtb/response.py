"""Encoding bid responses, and the protocol versions the bidder speaks."""

from __future__ import annotations

from typing import Final

import msgspec

from bidder.openrtb.model import BidResponse

SUPPORTED_VERSIONS: Final = ("2.5", "2.6")

_ENCODER: Final = msgspec.json.Encoder()


def encode_bid_response(response: BidResponse) -> bytes:
    return _ENCODER.encode(response)
