"""The named places a feature can come from.

A source is a small function of the request (evaluated once per request) or of one
impression (evaluated per impression). Naming them, instead of allowing arbitrary JSON
paths, keeps the spec declarative and the hot path free of path interpretation, and lets
derived values (local hour, ad size, inventory channel) be defined once for training and
serving alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bidder.openrtb.model import BidRequest, Imp, Publisher

Value = float | int | str | None


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What request-level sources see: the request and its moment in the user's local time."""

    request: BidRequest
    local_time: time.struct_time

    @classmethod
    def at(cls, request: BidRequest, now: float) -> RequestContext:
        geo = request.device.geo if request.device is not None else None
        offset_minutes = geo.utcoffset if geo is not None and geo.utcoffset is not None else 0
        # utcoffset is bounded to ±2^31 minutes by the decoder; clamp to real time zones.
        offset_minutes = max(-14 * 60, min(14 * 60, offset_minutes))
        return cls(request, time.gmtime(now + offset_minutes * 60))


@dataclass(frozen=True, slots=True)
class Source:
    scope: Literal["request", "imp", "constant"]
    extract: Callable[..., Value]
    description: str


def _publisher(request: BidRequest) -> Publisher | None:
    for inventory in (request.site, request.app, request.dooh):
        if inventory is not None:
            return inventory.publisher
    return None


def _domain(request: BidRequest) -> str | None:
    for inventory in (request.site, request.app, request.dooh):
        if inventory is not None and inventory.domain:
            return inventory.domain
    return None


def _domain_or_bundle(request: BidRequest) -> str | None:
    if request.app is not None and request.app.bundle:
        return request.app.bundle
    return _domain(request)


def _channel(request: BidRequest) -> int | None:
    if request.site is not None:
        return 1
    if request.app is not None:
        return 2
    if request.dooh is not None:
        return 3
    return None


def _ad_type(imp: Imp) -> int | None:
    if imp.banner is not None:
        return 1
    if imp.video is not None:
        return 2
    if imp.audio is not None:
        return 3
    if imp.native is not None:
        return 4
    return None


def _ad_size(imp: Imp) -> tuple[int, int] | None:
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


def _ad_size_label(imp: Imp) -> str | None:
    size = _ad_size(imp)
    return f"{size[0]}x{size[1]}" if size is not None else None


def _ad_width(imp: Imp) -> int | None:
    size = _ad_size(imp)
    return size[0] if size is not None else None


def _ad_height(imp: Imp) -> int | None:
    size = _ad_size(imp)
    return size[1] if size is not None else None


def _geo_field(name: str) -> Callable[[RequestContext], Value]:
    def extract(context: RequestContext) -> Value:
        device = context.request.device
        geo = device.geo if device is not None else None
        return getattr(geo, name) if geo is not None else None

    return extract


def _device_field(name: str) -> Callable[[RequestContext], Value]:
    def extract(context: RequestContext) -> Value:
        device = context.request.device
        return getattr(device, name) if device is not None else None

    return extract


def _os(context: RequestContext) -> str | None:
    device = context.request.device
    return device.os.lower() if device is not None and device.os else None


def _publisher_id(context: RequestContext) -> str | None:
    publisher = _publisher(context.request)
    return publisher.id if publisher is not None else None


SOURCES: dict[str, Source] = {
    "hour_of_day": Source(
        "request", lambda c: c.local_time.tm_hour, "hour 0-23 in the user's time zone"
    ),
    "day_of_week": Source(
        "request", lambda c: c.local_time.tm_wday, "day 0 (Monday) to 6 in the user's time zone"
    ),
    "device_type": Source("request", _device_field("devicetype"), "device.devicetype"),
    "connection_type": Source("request", _device_field("connectiontype"), "device.connectiontype"),
    "device_make": Source("request", _device_field("make"), "device.make"),
    "os": Source("request", _os, "device.os, lower-cased"),
    "country": Source("request", _geo_field("country"), "device.geo.country"),
    "region": Source("request", _geo_field("region"), "device.geo.region"),
    "city": Source("request", _geo_field("city"), "device.geo.city"),
    "domain": Source("request", lambda c: _domain(c.request), "site/app/dooh domain"),
    "domain_or_bundle": Source(
        "request", lambda c: _domain_or_bundle(c.request), "app.bundle, else the domain"
    ),
    "publisher_id": Source("request", _publisher_id, "publisher.id of the site/app/dooh"),
    "channel": Source("request", lambda c: _channel(c.request), "1 site, 2 app, 3 dooh"),
    "ad_type": Source("imp", _ad_type, "1 banner, 2 video, 3 audio, 4 native"),
    "ad_width": Source("imp", _ad_width, "banner/format/video width"),
    "ad_height": Source("imp", _ad_height, "banner/format/video height"),
    "ad_size": Source("imp", _ad_size_label, "'WxH' of the ad slot"),
    "bidfloor": Source("imp", lambda imp: imp.bidfloor, "imp.bidfloor"),
    "interstitial": Source("imp", lambda imp: imp.instl, "imp.instl"),
    "ad_position": Source(
        "imp", lambda imp: imp.banner.pos if imp.banner is not None else None, "banner.pos"
    ),
    "constant": Source("constant", lambda: None, "the feature's own `value`"),
}
