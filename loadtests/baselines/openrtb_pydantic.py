"""The bid request and response as pydantic models, the way the FastAPI documentation
would have them declared, and the baselines' decision: the bidder's default threshold and
linear price, one bid per impression whose score clears the threshold and the floor.

Shared by the FastAPI baselines so that they differ from each other only in how they score.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from fastapi import Response
from pydantic import BaseModel

# The bidder's default decision settings, so that the baselines bid on the same impressions.
BID_THRESHOLD = 0.05
PRICE_SLOPE = 40.0
MAX_PRICE = 20.0


class Format(BaseModel):
    w: int | None = None
    h: int | None = None


class Banner(BaseModel):
    w: int | None = None
    h: int | None = None
    format: list[Format] | None = None
    pos: int | None = None


class Video(BaseModel):
    mimes: list[str] | None = None
    w: int | None = None
    h: int | None = None


class Native(BaseModel):
    request: str


class Imp(BaseModel):
    id: str
    banner: Banner | None = None
    video: Video | None = None
    native: Native | None = None
    bidfloor: float = 0.0
    bidfloorcur: str = "USD"
    instl: int = 0


class Publisher(BaseModel):
    id: str | None = None


class Site(BaseModel):
    id: str | None = None
    domain: str | None = None
    page: str | None = None
    publisher: Publisher | None = None


class App(BaseModel):
    id: str | None = None
    bundle: str | None = None
    domain: str | None = None
    publisher: Publisher | None = None


class Geo(BaseModel):
    country: str | None = None
    region: str | None = None
    city: str | None = None
    utcoffset: int | None = None


class Device(BaseModel):
    devicetype: int | None = None
    make: str | None = None
    os: str | None = None
    connectiontype: int | None = None
    geo: Geo | None = None


class BidRequest(BaseModel):
    id: str
    imp: list[Imp]
    site: Site | None = None
    app: App | None = None
    device: Device | None = None
    tmax: int | None = None
    cur: list[str] | None = None


class Bid(BaseModel):
    id: str
    impid: str
    price: float
    crid: str


class SeatBid(BaseModel):
    bid: list[Bid]


class BidResponse(BaseModel):
    id: str
    seatbid: list[SeatBid]
    cur: str = "USD"


def bid_response(request: BidRequest, scores: Sequence[float]) -> BidResponse | Response:
    """A bid for each impression that clears the threshold and its floor; else a 204."""
    bids = []
    for imp, score in zip(request.imp, scores, strict=True):
        price = min(MAX_PRICE, PRICE_SLOPE * score)
        if score >= BID_THRESHOLD and price >= imp.bidfloor:
            bids.append(Bid(id=uuid.uuid4().hex, impid=imp.id, price=price, crid="baseline"))
    if not bids:
        return Response(status_code=204)
    return BidResponse(id=request.id, seatbid=[SeatBid(bid=bids)])
