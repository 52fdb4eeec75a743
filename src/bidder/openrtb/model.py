"""OpenRTB 2.5 / 2.6 request and response objects as msgspec structs.

Only the fields the bidder reads, or that the specification's core rules constrain, are
declared. Everything else, `ext` objects included, is skipped by the decoder without being
materialised, which keeps decoding close to the cost of plain JSON parsing.

Integer fields are bounded so that no value decoded from the wire can overflow a float
or a C integer later in the pipeline; sizes, floors and `tmax` are non-negative.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

INT32_MAX = 2**31 - 1

Int = Annotated[int, msgspec.Meta(ge=-INT32_MAX - 1, le=INT32_MAX)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0.0)]


class Format(msgspec.Struct, frozen=True):
    w: NonNegativeInt | None = None
    h: NonNegativeInt | None = None
    wratio: NonNegativeInt | None = None
    hratio: NonNegativeInt | None = None
    wmin: NonNegativeInt | None = None


class Banner(msgspec.Struct, frozen=True):
    format: list[Format] | None = None
    w: NonNegativeInt | None = None
    h: NonNegativeInt | None = None
    btype: list[Int] | None = None
    battr: list[Int] | None = None
    pos: Int | None = None
    mimes: list[str] | None = None


class Video(msgspec.Struct, frozen=True):
    mimes: list[str] | None = None
    minduration: NonNegativeInt | None = None
    maxduration: NonNegativeInt | None = None
    w: NonNegativeInt | None = None
    h: NonNegativeInt | None = None
    battr: list[Int] | None = None
    placement: Int | None = None
    plcmt: Int | None = None


class Audio(msgspec.Struct, frozen=True):
    mimes: list[str] | None = None
    minduration: NonNegativeInt | None = None
    maxduration: NonNegativeInt | None = None
    battr: list[Int] | None = None


class Native(msgspec.Struct, frozen=True):
    request: str | None = None
    ver: str | None = None
    battr: list[Int] | None = None


class Deal(msgspec.Struct, frozen=True):
    id: str | None = None
    bidfloor: NonNegativeFloat = 0.0
    bidfloorcur: str = "USD"


class Pmp(msgspec.Struct, frozen=True):
    private_auction: Int = 0
    deals: list[Deal] | None = None


class Imp(msgspec.Struct, frozen=True):
    id: str | None = None
    banner: Banner | None = None
    video: Video | None = None
    audio: Audio | None = None
    native: Native | None = None
    pmp: Pmp | None = None
    instl: Int = 0
    tagid: str | None = None
    bidfloor: NonNegativeFloat = 0.0
    bidfloorcur: str = "USD"
    secure: Int | None = None


class Publisher(msgspec.Struct, frozen=True):
    id: str | None = None
    name: str | None = None
    domain: str | None = None


class Site(msgspec.Struct, frozen=True):
    id: str | None = None
    domain: str | None = None
    page: str | None = None
    cat: list[str] | None = None
    publisher: Publisher | None = None


class App(msgspec.Struct, frozen=True):
    id: str | None = None
    bundle: str | None = None
    domain: str | None = None
    cat: list[str] | None = None
    publisher: Publisher | None = None


class Dooh(msgspec.Struct, frozen=True):
    """Digital out-of-home inventory (OpenRTB 2.6)."""

    id: str | None = None
    domain: str | None = None
    publisher: Publisher | None = None


class Geo(msgspec.Struct, frozen=True):
    lat: float | None = None
    lon: float | None = None
    country: str | None = None
    region: str | None = None
    city: str | None = None
    utcoffset: Int | None = None


class Device(msgspec.Struct, frozen=True):
    devicetype: Int | None = None
    os: str | None = None
    make: str | None = None
    w: NonNegativeInt | None = None
    h: NonNegativeInt | None = None
    connectiontype: Int | None = None
    geo: Geo | None = None
    # `ua`, `ip`, `ifa` and the other identifiers are deliberately not declared: the
    # bidder never reads them, so they are never materialised or logged.


class BidRequest(msgspec.Struct, frozen=True):
    id: str | None = None
    imp: list[Imp] | None = None
    site: Site | None = None
    app: App | None = None
    dooh: Dooh | None = None
    device: Device | None = None
    test: Int = 0
    at: Int = 2
    tmax: NonNegativeInt | None = None
    cur: list[str] | None = None
    bcat: list[str] | None = None
    badv: list[str] | None = None


class Bid(msgspec.Struct, omit_defaults=True):
    id: str
    impid: str
    price: float
    adomain: list[str] | None = None
    crid: str | None = None
    cat: list[str] | None = None
    attr: list[int] | None = None
    w: int | None = None
    h: int | None = None
    adm: str | None = None
    nurl: str | None = None
    adid: str | None = None


class SeatBid(msgspec.Struct, omit_defaults=True):
    bid: list[Bid]
    seat: str | None = None


class BidResponse(msgspec.Struct, omit_defaults=True):
    id: str
    seatbid: list[SeatBid]
    # Required here although OpenRTB defaults it to USD: an explicit currency is never misread.
    cur: str
    bidid: str | None = None
