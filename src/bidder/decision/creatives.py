"""The creatives the bidder can offer, and which of them an impression admits.

A creative is only offered where the request allows it: its advertiser domains are not in
`badv`, its categories not in `bcat`, its attributes not in the slot's `battr`, its size
is one the slot accepts, and its kind (banner, video, audio, native) is one the slot offers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from bidder.errors import ConfigurationError
from bidder.openrtb.model import Banner, BidRequest, Imp

PRICE_MACRO = "${AUCTION_PRICE}"

CreativeKind = Literal["banner", "video", "audio", "native"]


class Creative(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    crid: Annotated[str, msgspec.Meta(min_length=1)]
    kind: CreativeKind
    adomain: list[str]
    adid: str | None = None
    w: Annotated[int, msgspec.Meta(ge=0)] | None = None
    h: Annotated[int, msgspec.Meta(ge=0)] | None = None
    cat: list[str] = []
    attr: list[int] = []
    mimes: list[str] = []
    duration: Annotated[int, msgspec.Meta(ge=0)] | None = None
    # The markup, or a win-notice URL the exchange calls to fetch it; either may carry the
    # `${AUCTION_PRICE}` macro, which the exchange substitutes, never the bidder.
    adm: str | None = None
    nurl: str | None = None


class CreativeCatalog(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    creatives: list[Creative]

    @classmethod
    def load(cls, path: str | Path) -> CreativeCatalog:
        path = Path(path)
        try:
            catalog = msgspec.json.decode(path.read_bytes(), type=cls)
        except OSError as exc:
            raise ConfigurationError(f"cannot read creatives {path}: {exc.strerror}") from None
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ConfigurationError(f"creatives {path}: {exc}") from None
        for index, creative in enumerate(catalog.creatives):
            if creative.adm is None and creative.nurl is None:
                raise ConfigurationError(
                    f"creatives {path}: creatives[{index}] ({creative.crid}) needs adm or nurl"
                )
        return catalog


def admits(request: BidRequest, imp: Imp, creative: Creative) -> bool:
    """Whether `creative` may be offered for `imp` under the request's blocking rules."""
    if request.badv and not set(request.badv).isdisjoint(creative.adomain):
        return False
    if request.bcat and not set(request.bcat).isdisjoint(creative.cat):
        return False
    if creative.kind == "banner":
        return imp.banner is not None and _banner_admits(imp.banner, creative)
    if creative.kind == "video":
        video = imp.video
        if video is None or not _attrs_allowed(video.battr, creative):
            return False
        if creative.mimes and video.mimes and set(video.mimes).isdisjoint(creative.mimes):
            return False
        duration = creative.duration
        if duration is not None:
            if video.minduration is not None and duration < video.minduration:
                return False
            if video.maxduration is not None and duration > video.maxduration:
                return False
        return True
    if creative.kind == "audio":
        audio = imp.audio
        if audio is None or not _attrs_allowed(audio.battr, creative):
            return False
        return not (creative.mimes and audio.mimes and set(audio.mimes).isdisjoint(creative.mimes))
    native = imp.native
    return native is not None and _attrs_allowed(native.battr, creative)


def _banner_admits(banner: Banner, creative: Creative) -> bool:
    if not _attrs_allowed(banner.battr, creative):
        return False
    sizes = [(f.w, f.h) for f in banner.format or () if f.w and f.h]
    if banner.w and banner.h:
        sizes.append((banner.w, banner.h))
    # A banner that names no size accepts any; one that does accepts only those sizes.
    return not sizes or (creative.w, creative.h) in sizes


def _attrs_allowed(blocked: list[int] | None, creative: Creative) -> bool:
    return not blocked or set(blocked).isdisjoint(creative.attr)
