"""Deciding bids: policy, pricing, currency, creatives and the request's blocking rules."""

from bidder.decision.creatives import PRICE_MACRO, Creative, CreativeCatalog, admits
from bidder.decision.policy import BidPolicy, ImpDecision, LinearPricing, NoBidReason

__all__ = [
    "PRICE_MACRO",
    "BidPolicy",
    "Creative",
    "CreativeCatalog",
    "ImpDecision",
    "LinearPricing",
    "NoBidReason",
    "admits",
]
