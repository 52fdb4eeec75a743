"""The named places a feature can come from.

A source is a Python expression over the request, evaluated once per request, or over one
impression, evaluated per impression. Naming them, instead of allowing arbitrary JSON
paths, keeps the spec declarative and the hot path free of path interpretation, and lets
derived values (local hour, ad size, inventory channel) be defined once for training and
serving alike. The vectorizer compiles the expressions of a spec's sources into one
function (`bidder.features.compiler`); the expressions are this module's own text, never
anything read from a spec.

The names an expression may use: `request` (the `BidRequest`), `device` and `geo` (the
request's, or empty ones when it has none, so that every field reads as None), `local_time`
(the arrival time in the user's time zone, a `time.struct_time`), `inventory` (the request's
site, app or dooh, or None), and per impression `imp`
and `size` (the slot's `(w, h)`, or None); plus the helpers below.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final, Literal

from bidder.openrtb.model import BidRequest, Device, Geo, Imp

Value = float | int | str | None
# What an expression gives, so that its encoding can skip the checks it cannot need:
# `int` is never None, `int?` and `str?` may be None, `float` is never None.
Kind = Literal["int", "int?", "float", "str?"]
Local = Literal["device", "geo", "inventory", "local_time", "size"]

# Every field of these reads as None: a request without a device (or a device without a
# geo) needs no check in the expressions.
NO_DEVICE: Final = Device()
NO_GEO: Final = Geo()
# utcoffset is bounded to ±2^31 minutes by the decoder; clamped to real time zones.
_MAX_UTC_OFFSET_MINUTES: Final = 14 * 60


@dataclass(frozen=True, slots=True)
class Source:
    scope: Literal["request", "imp", "constant"]
    expression: str
    kind: Kind
    description: str
    # The derived locals the expression reads, computed once per request or impression.
    needs: tuple[Local, ...] = ()


def local_time_of(geo: Geo, now: float) -> time.struct_time:
    """`now` (seconds since the epoch) in the user's time zone, from `geo.utcoffset`."""
    offset_minutes = geo.utcoffset if geo.utcoffset is not None else 0
    offset_minutes = max(-_MAX_UTC_OFFSET_MINUTES, min(_MAX_UTC_OFFSET_MINUTES, offset_minutes))
    return time.gmtime(now + offset_minutes * 60)


def domain(request: BidRequest) -> str | None:
    for inventory in (request.site, request.app, request.dooh):
        if inventory is not None and inventory.domain:
            return inventory.domain
    return None


def domain_or_bundle(request: BidRequest) -> str | None:
    if request.app is not None and request.app.bundle:
        return request.app.bundle
    return domain(request)


def ad_size(imp: Imp) -> tuple[int, int] | None:
    banner = imp.banner
    if banner is not None:
        if banner.w and banner.h:
            return banner.w, banner.h
        if banner.format:
            first = banner.format[0]
            if first.w and first.h:
                return first.w, first.h
    video = imp.video
    if video is not None and video.w and video.h:
        return video.w, video.h
    return None


def _request(expression: str, kind: Kind, description: str, *needs: Local) -> Source:
    return Source("request", expression, kind, description, needs)


def _imp(expression: str, kind: Kind, description: str, *needs: Local) -> Source:
    return Source("imp", expression, kind, description, needs)


SOURCES: dict[str, Source] = {
    "hour_of_day": _request(
        "local_time.tm_hour", "int", "hour 0-23 in the user's time zone", "local_time"
    ),
    "day_of_week": _request(
        "local_time.tm_wday", "int", "day 0 (Monday) to 6 in the user's time zone", "local_time"
    ),
    "device_type": _request("device.devicetype", "int?", "device.devicetype", "device"),
    "connection_type": _request("device.connectiontype", "int?", "device.connectiontype", "device"),
    "device_make": _request("device.make", "str?", "device.make", "device"),
    "os": _request(
        "device.os.lower() if device.os else None", "str?", "device.os, lower-cased", "device"
    ),
    "country": _request("geo.country", "str?", "device.geo.country", "geo"),
    "region": _request("geo.region", "str?", "device.geo.region", "geo"),
    "city": _request("geo.city", "str?", "device.geo.city", "geo"),
    "domain": _request("domain(request)", "str?", "site/app/dooh domain"),
    "domain_or_bundle": _request(
        "domain_or_bundle(request)", "str?", "app.bundle, else the domain"
    ),
    "publisher_id": _request(
        "None if inventory is None or inventory.publisher is None else inventory.publisher.id",
        "str?",
        "publisher.id of the site/app/dooh",
        "inventory",
    ),
    # Conditional expressions rather than helper functions: a Python call per feature would
    # cost more than the feature's whole expression.
    "channel": _request(
        "1 if request.site is not None else 2 if request.app is not None"
        " else 3 if request.dooh is not None else None",
        "int?",
        "1 site, 2 app, 3 dooh",
    ),
    "ad_type": _imp(
        "1 if imp.banner is not None else 2 if imp.video is not None"
        " else 3 if imp.audio is not None else 4 if imp.native is not None else None",
        "int?",
        "1 banner, 2 video, 3 audio, 4 native",
    ),
    "ad_width": _imp(
        "None if size is None else size[0]", "int?", "banner/format/video width", "size"
    ),
    "ad_height": _imp(
        "None if size is None else size[1]", "int?", "banner/format/video height", "size"
    ),
    "ad_size": _imp(
        "None if size is None else f'{size[0]}x{size[1]}'", "str?", "'WxH' of the ad slot", "size"
    ),
    "bidfloor": _imp("imp.bidfloor", "float", "imp.bidfloor"),
    "interstitial": _imp("imp.instl", "int", "imp.instl"),
    "ad_position": _imp("None if imp.banner is None else imp.banner.pos", "int?", "banner.pos"),
    "constant": Source("constant", "", "float", "the feature's own `value`"),
}

# How each derived local is computed, in dependency order.
LOCALS: Final[dict[Local, str]] = {
    "device": "NO_DEVICE if request.device is None else request.device",
    "geo": "NO_GEO if device.geo is None else device.geo",
    # The first of site, app and dooh present (a valid request has at most one).
    "inventory": "request.site if request.site is not None"
    " else request.app if request.app is not None else request.dooh",
    "local_time": "local_time_of(geo, now)",
    "size": "ad_size(imp)",
}
# What each local needs before it.
LOCAL_NEEDS: Final[dict[Local, tuple[Local, ...]]] = {
    "device": (),
    "geo": ("device",),
    "inventory": (),
    "local_time": ("geo", "device"),
    "size": (),
}
# The module-level names expressions may call.
HELPERS: Final = {
    "NO_DEVICE": NO_DEVICE,
    "NO_GEO": NO_GEO,
    "local_time_of": local_time_of,
    "domain": domain,
    "domain_or_bundle": domain_or_bundle,
    "ad_size": ad_size,
}
