"""Turning scores into bids: the threshold, the price, the currency and the creative.

Per impression, in order: a private auction the bidder holds no deal for is declined; the
score must clear the threshold; the price is the pricing rule's value of the score, capped,
and must reach the floor (a bid is never raised to a floor above its value); the request
must accept the bidder's currency; and some creative must survive the blocking rules.
The first rule an impression fails is its no-bid reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import msgspec
import numpy as np

from bidder.decision.creatives import Creative, CreativeCatalog, admits
from bidder.openrtb.model import Bid, BidRequest, BidResponse, Imp, SeatBid


class NoBidReason(StrEnum):
    PRIVATE_AUCTION = "private_auction"
    BELOW_THRESHOLD = "below_threshold"
    BELOW_FLOOR = "below_floor"
    CURRENCY = "currency"
    NO_CREATIVE = "no_creative"


@dataclass(frozen=True, slots=True)
class LinearPricing:
    """`price = intercept + slope * score` in CPM, capped at `max_price`."""

    intercept: float
    slope: float
    max_price: float

    def price(self, score: float) -> float:
        return round(min(self.max_price, self.intercept + self.slope * score), 4)


class ImpDecision(msgspec.Struct, frozen=True, gc=False):
    # A struct, not a frozen dataclass: built once per impression, in a tenth of the time.
    imp: Imp
    score: float
    price: float | None = None
    creative: Creative | None = None
    reason: NoBidReason | None = None

    @property
    def is_bid(self) -> bool:
        return self.reason is None


# The reasons `decide` gives in its loop, as module names: a global read is cheaper than an
# enum member's look-up through its class.
_PRIVATE_AUCTION: Final = NoBidReason.PRIVATE_AUCTION
_BELOW_THRESHOLD: Final = NoBidReason.BELOW_THRESHOLD


class BidPolicy:
    def __init__(
        self,
        *,
        threshold: float,
        pricing: LinearPricing,
        currency: str,
        catalog: CreativeCatalog,
        seat: str | None = None,
    ) -> None:
        self.threshold = threshold
        self.pricing = pricing
        self.currency = currency
        self.creatives = catalog.creatives
        self.seat = seat

    def decide(self, request: BidRequest, scores: Iterable[float]) -> list[ImpDecision]:
        """One decision per impression, `scores` being in `request.imp` order."""
        imps = request.imp or []
        currency_accepted = not request.cur or self.currency in request.cur
        # Python floats at once: iterating an array makes a numpy scalar per score. The
        # bid path's scores are a list of floats already (see `MicroBatcher`).
        if isinstance(scores, list):
            values = scores
        elif isinstance(scores, np.ndarray):
            values = scores.tolist()
        else:
            values = [float(score) for score in scores]
        threshold = self.threshold
        decisions = []
        # The first two rules written out in the loop: most impressions stop at the
        # threshold, and a method call each would cost as much as deciding them.
        for imp, score in zip(imps, values, strict=True):
            if imp.pmp is not None and imp.pmp.private_auction:
                decisions.append(ImpDecision(imp, score, None, None, _PRIVATE_AUCTION))
            elif not score >= threshold:  # also declines a NaN score
                decisions.append(ImpDecision(imp, score, None, None, _BELOW_THRESHOLD))
            else:
                decisions.append(self._price_and_match(request, imp, score, currency_accepted))
        return decisions

    def _price_and_match(
        self, request: BidRequest, imp: Imp, score: float, currency_accepted: bool
    ) -> ImpDecision:
        """The rules after the threshold, for an impression that has cleared it."""
        if not currency_accepted or (imp.bidfloor > 0 and imp.bidfloorcur != self.currency):
            # A floor in another currency cannot be compared without rates we do not have.
            return ImpDecision(imp, score, reason=NoBidReason.CURRENCY)
        price = self.pricing.price(score)
        if price <= 0 or price < imp.bidfloor:
            return ImpDecision(imp, score, price, reason=NoBidReason.BELOW_FLOOR)
        for creative in self.creatives:
            if admits(request, imp, creative):
                return ImpDecision(imp, score, price, creative)
        return ImpDecision(imp, score, price, reason=NoBidReason.NO_CREATIVE)

    def respond(self, request: BidRequest, decisions: Sequence[ImpDecision]) -> BidResponse | None:
        """The bid response for the decisions, or None when no impression is bid on."""
        bids = [_bid(decision) for decision in decisions if decision.reason is None]
        if not bids:
            return None
        assert request.id is not None
        return BidResponse(
            id=request.id,
            seatbid=[SeatBid(bid=bids, seat=self.seat)],
            cur=self.currency,
            bidid=_random_id(),
        )


class _RandomIds:
    """64-bit random ids in hex, as `secrets.token_hex(8)` makes them, from the same source
    (`os.urandom`) read a few kilobytes at a time instead of in a system call per id."""

    __slots__ = ("_hex", "_next")

    _BYTES: Final = 4096
    _WIDTH: Final = 16

    def __init__(self) -> None:
        self._hex = ""
        self._next = 0
        # A forked worker must not hand out the ids left in its parent's buffer.
        os.register_at_fork(after_in_child=self._discard)

    def _discard(self) -> None:
        self._hex = ""
        self._next = 0

    def __call__(self) -> str:
        start = self._next
        if start >= len(self._hex):
            self._hex = os.urandom(self._BYTES).hex()
            start = 0
        self._next = start + self._WIDTH
        return self._hex[start : self._next]


_random_id = _RandomIds()


def _bid(decision: ImpDecision) -> Bid:
    creative = decision.creative
    assert creative is not None
    assert decision.price is not None
    assert decision.imp.id is not None
    return Bid(
        id=_random_id(),
        impid=decision.imp.id,
        price=decision.price,
        adomain=creative.adomain,
        crid=creative.crid,
        adid=creative.adid,
        cat=creative.cat or None,
        attr=creative.attr or None,
        w=creative.w,
        h=creative.h,
        adm=creative.adm,
        nurl=creative.nurl,
    )
