"""Properties of the request model: generated valid requests decode to what was sent, and
generated invalid ones are refused with an `InvalidRequest` naming the offending field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bidder.errors import InvalidRequest
from bidder.openrtb import BidRequest, decode_bid_request
from bidder.openrtb.model import INT32_MAX

Document = dict[str, Any]

TEXT = st.text(min_size=1, max_size=12)
SIZES = st.integers(0, 4000)
FLOORS = st.floats(0, 1000, allow_nan=False, allow_infinity=False)
INT32 = st.integers(-INT32_MAX - 1, INT32_MAX)
MIMES = st.lists(st.sampled_from(["video/mp4", "audio/mpeg", "image/png"]), min_size=1)

BANNERS = st.fixed_dictionaries(
    {"w": SIZES, "h": SIZES},
    optional={"format": st.lists(st.fixed_dictionaries({"w": SIZES, "h": SIZES}), max_size=3)},
)
MEDIA = st.one_of(
    st.fixed_dictionaries({"banner": BANNERS}),
    st.fixed_dictionaries({"video": st.fixed_dictionaries({"mimes": MIMES, "w": SIZES})}),
    st.fixed_dictionaries({"audio": st.fixed_dictionaries({"mimes": MIMES})}),
    st.fixed_dictionaries({"native": st.fixed_dictionaries({"request": st.text(max_size=40)})}),
)
IMP_EXTRAS = st.fixed_dictionaries(
    {},
    optional={
        "bidfloor": FLOORS,
        "bidfloorcur": st.sampled_from(["USD", "EUR"]),
        "tagid": TEXT,
        "instl": st.integers(0, 1),
        "ext": st.dictionaries(TEXT, st.integers() | st.text(max_size=5), max_size=3),
    },
)
GEO = st.fixed_dictionaries(
    {},
    optional={
        "country": st.sampled_from(["USA", "DEU", "FRA"]),
        "utcoffset": st.integers(-720, 840),
        "lat": st.floats(-90, 90),
        "lon": st.floats(-180, 180),
    },
)
DEVICE = st.fixed_dictionaries(
    {},
    optional={
        "devicetype": st.integers(1, 7),
        "os": st.sampled_from(["ios", "android", "windows"]),
        "w": SIZES,
        "h": SIZES,
        "geo": GEO,
        # Identifiers the bidder never declares: skipped, never materialised.
        "ifa": TEXT,
        "ip": st.just("192.0.2.1"),
    },
)
PLACEMENT = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"site": st.fixed_dictionaries({"domain": TEXT})}),
    st.fixed_dictionaries({"app": st.fixed_dictionaries({"bundle": TEXT})}),
)
REQUEST_EXTRAS = st.fixed_dictionaries(
    {},
    optional={
        "device": DEVICE,
        "tmax": st.integers(0, 10_000),
        "cur": st.lists(st.sampled_from(["USD", "EUR"]), min_size=1, max_size=2),
        "bcat": st.lists(TEXT, max_size=3),
        "badv": st.lists(TEXT, max_size=3),
        "test": st.integers(0, 1),
    },
)


@st.composite
def valid_requests(draw: st.DrawFn) -> Document:
    imp_ids = draw(st.lists(TEXT, min_size=1, max_size=5, unique=True))
    imps = [{"id": imp_id, **draw(MEDIA), **draw(IMP_EXTRAS)} for imp_id in imp_ids]
    return {"id": draw(TEXT), "imp": imps, **draw(PLACEMENT), **draw(REQUEST_EXTRAS)}


def _encode(document: Document) -> bytes:
    # The standard library, unlike orjson, writes integers past 64 bits (ext may hold them).
    return json.dumps(document).encode()


def _used_fields(request: BidRequest) -> Document:
    """The fields the vectorizer and the decision read, back in the wire's shape."""
    assert request.imp is not None
    imps: list[Document] = []
    for imp in request.imp:
        fields: Document = {"id": imp.id, "bidfloor": imp.bidfloor, "bidfloorcur": imp.bidfloorcur}
        if imp.banner is not None:
            fields["banner"] = (imp.banner.w, imp.banner.h)
        if imp.video is not None:
            fields["video"] = imp.video.mimes
        if imp.native is not None:
            fields["native"] = imp.native.request
        imps.append(fields)
    device = request.device
    geo = device.geo if device is not None else None
    return {
        "id": request.id,
        "imp": imps,
        "site": request.site.domain if request.site else None,
        "app": request.app.bundle if request.app else None,
        "os": device.os if device else None,
        "devicetype": device.devicetype if device else None,
        "country": geo.country if geo else None,
        "utcoffset": geo.utcoffset if geo else None,
        "tmax": request.tmax,
        "cur": request.cur,
        "bcat": request.bcat,
        "badv": request.badv,
    }


def _expected_fields(document: Document) -> Document:
    imps: list[Document] = []
    for imp in document["imp"]:
        fields: Document = {
            "id": imp["id"],
            "bidfloor": imp.get("bidfloor", 0.0),
            "bidfloorcur": imp.get("bidfloorcur", "USD"),
        }
        if "banner" in imp:
            fields["banner"] = (imp["banner"]["w"], imp["banner"]["h"])
        if "video" in imp:
            fields["video"] = imp["video"]["mimes"]
        if "native" in imp:
            fields["native"] = imp["native"]["request"]
        imps.append(fields)
    device = document.get("device", {})
    geo = device.get("geo", {})
    return {
        "id": document["id"],
        "imp": imps,
        "site": document.get("site", {}).get("domain"),
        "app": document.get("app", {}).get("bundle"),
        "os": device.get("os"),
        "devicetype": device.get("devicetype"),
        "country": geo.get("country"),
        "utcoffset": geo.get("utcoffset"),
        "tmax": document.get("tmax"),
        "cur": document.get("cur"),
        "bcat": document.get("bcat"),
        "badv": document.get("badv"),
    }


@settings(max_examples=300, deadline=None)
@given(valid_requests())
def test_valid_requests_decode_to_the_fields_sent(document: Document) -> None:
    request = decode_bid_request(_encode(document))
    assert _used_fields(request) == _expected_fields(document)


@settings(max_examples=100, deadline=None)
@given(valid_requests())
def test_decoding_is_independent_of_key_order(document: Document) -> None:
    reordered = dict(reversed(list(document.items())))
    assert decode_bid_request(_encode(reordered)) == decode_bid_request(_encode(document))


# Each breaks one rule of a valid request and returns the path the refusal must name.
Breakage = Callable[[Document, int], str]


def _wrong_floor_type(document: Document, index: int) -> str:
    document["imp"][index]["bidfloor"] = "0.5"
    return f"imp[{index}].bidfloor"


def _negative_floor(document: Document, index: int) -> str:
    document["imp"][index]["bidfloor"] = -0.01
    return f"imp[{index}].bidfloor"


def _no_imp_id(document: Document, index: int) -> str:
    del document["imp"][index]["id"]
    return f"imp[{index}].id"


def _empty_imp_id(document: Document, index: int) -> str:
    document["imp"][index]["id"] = ""
    return f"imp[{index}].id"


def _duplicate_imp_id(document: Document, index: int) -> str:
    document["imp"].append(copy.deepcopy(document["imp"][index]))
    return f"imp[{len(document['imp']) - 1}].id"


def _no_media(document: Document, index: int) -> str:
    imp = document["imp"][index]
    for media in ("banner", "video", "audio", "native"):
        imp.pop(media, None)
    return f"imp[{index}]"


def _oversized_width(document: Document, index: int) -> str:
    document["imp"][index]["banner"] = {"w": INT32_MAX + 1, "h": 50}
    return f"imp[{index}].banner.w"


def _video_without_mimes(document: Document, index: int) -> str:
    imp = document["imp"][index]
    imp.pop("banner", None)
    imp["video"] = {"w": 640}
    return f"imp[{index}].video.mimes"


def _format_of_wrong_type(document: Document, index: int) -> str:
    document["imp"][index]["banner"] = {"format": [{"w": 300, "h": 250}, {"w": "wide"}]}
    return f"imp[{index}].banner.format[1].w"


def _no_request_id(document: Document, _: int) -> str:
    del document["id"]
    return "id"


def _numeric_request_id(document: Document, _: int) -> str:
    document["id"] = 42
    return "id"


def _no_imps(document: Document, _: int) -> str:
    document["imp"] = []
    return "imp"


def _site_and_app(document: Document, _: int) -> str:
    document["site"] = {"domain": "news.example"}
    document["app"] = {"bundle": "com.example"}
    return "app"


def _negative_tmax(document: Document, _: int) -> str:
    document["tmax"] = -1
    return "tmax"


def _offset_out_of_range(document: Document, _: int) -> str:
    document["device"] = {"geo": {"utcoffset": 2**40}}
    return "device.geo.utcoffset"


def _currency_not_a_list(document: Document, _: int) -> str:
    document["cur"] = "USD"
    return "cur"


BREAKAGES: list[Breakage] = [
    _wrong_floor_type,
    _negative_floor,
    _no_imp_id,
    _empty_imp_id,
    _duplicate_imp_id,
    _no_media,
    _oversized_width,
    _video_without_mimes,
    _format_of_wrong_type,
    _no_request_id,
    _numeric_request_id,
    _no_imps,
    _site_and_app,
    _negative_tmax,
    _offset_out_of_range,
    _currency_not_a_list,
]


@settings(max_examples=400, deadline=None)
@given(valid_requests(), st.sampled_from(BREAKAGES), st.data())
def test_invalid_requests_are_refused_naming_the_field(
    document: Document, breakage: Breakage, data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(document["imp"]) - 1), label="imp")
    path = breakage(document, index)
    with pytest.raises(InvalidRequest) as refusal:
        decode_bid_request(_encode(document))
    assert refusal.value.path == path, str(refusal.value)
    assert str(refusal.value).startswith(f"{path}: ")


@settings(max_examples=200, deadline=None)
@given(valid_requests(), st.integers(1, 40))
def test_nesting_past_the_limit_is_refused_wherever_it_is(document: Document, depth: int) -> None:
    limit = 16
    nested: Any = 0
    for _ in range(depth):
        nested = [nested]
    document["imp"][0]["ext"] = {"deep": nested}
    # Brackets inside strings are text, never nesting.
    document["imp"][0]["tagid"] = "[" * 100
    body = _encode(document)
    # The request object, imp, its first element, ext and the list inside: `depth + 4`.
    if depth + 4 <= limit:
        assert decode_bid_request(body, max_depth=limit).imp
        return
    with pytest.raises(InvalidRequest, match=rf"^body: JSON nested too deeply \(limit {limit} "):
        decode_bid_request(body, max_depth=limit)
