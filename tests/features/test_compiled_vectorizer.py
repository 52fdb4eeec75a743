"""The compiled vectorizer against a plain reference: every source, every encoding, the
synthetic traffic and the OpenRTB corpus give the same rows, NaN for NaN."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson
import pytest

from bidder.errors import InvalidRequest
from bidder.features import SOURCES, FeatureSpec, Vectorizer, stable_hash
from bidder.openrtb import BidRequest, Imp, decode_bid_request
from bidder.traffic.synthetic import generate_bid_requests


def _size(imp: Imp) -> tuple[int, int] | None:
    if imp.banner is not None:
        if imp.banner.w and imp.banner.h:
            return imp.banner.w, imp.banner.h
        if imp.banner.format and imp.banner.format[0].w and imp.banner.format[0].h:
            return imp.banner.format[0].w, imp.banner.format[0].h
    if imp.video is not None and imp.video.w and imp.video.h:
        return imp.video.w, imp.video.h
    return None


def _inventory(request: BidRequest) -> Any:
    return request.site or request.app or request.dooh


def _domain(request: BidRequest) -> str | None:
    for inventory in (request.site, request.app, request.dooh):
        if inventory is not None and inventory.domain:
            return inventory.domain
    return None


def reference_value(source: str, request: BidRequest, imp: Imp, now: float) -> Any:
    """What each source means, written out plainly, independently of the compiled code."""
    device = request.device
    geo = device.geo if device is not None else None
    offset = geo.utcoffset if geo is not None and geo.utcoffset is not None else 0
    local = time.gmtime(now + max(-840, min(840, offset)) * 60)
    size = _size(imp)
    inventory = _inventory(request)
    values = {
        "hour_of_day": local.tm_hour,
        "day_of_week": local.tm_wday,
        "device_type": device.devicetype if device else None,
        "connection_type": device.connectiontype if device else None,
        "device_make": device.make if device else None,
        "os": device.os.lower() if device and device.os else None,
        "country": geo.country if geo else None,
        "region": geo.region if geo else None,
        "city": geo.city if geo else None,
        "domain": _domain(request),
        "domain_or_bundle": (request.app.bundle if request.app and request.app.bundle else None)
        or _domain(request),
        "publisher_id": inventory.publisher.id if inventory and inventory.publisher else None,
        "channel": 1 if request.site else 2 if request.app else 3 if request.dooh else None,
        "ad_type": 1
        if imp.banner
        else 2
        if imp.video
        else 3
        if imp.audio
        else 4
        if imp.native
        else None,
        "ad_width": size[0] if size else None,
        "ad_height": size[1] if size else None,
        "ad_size": f"{size[0]}x{size[1]}" if size else None,
        "bidfloor": imp.bidfloor,
        "interstitial": imp.instl,
        "ad_position": imp.banner.pos if imp.banner else None,
    }
    return values[source]


def reference_encode(value: Any, encoding: dict[str, Any]) -> float:
    if value is None:
        return math.nan
    if encoding["kind"] == "hash":
        return float(stable_hash(str(value), encoding["buckets"]))
    if encoding["kind"] == "vocabulary":
        values = encoding["values"]
        return float(values.index(str(value))) if str(value) in values else encoding["unknown"]
    try:
        number = float(value)
    except ValueError:
        return math.nan
    return number if math.isfinite(number) else math.nan


VOCABULARY = ["USA", "GBR", "ios", "android", "1", "2", "4", "300x250", "0.5", "Apple"]
ENCODINGS: list[dict[str, Any]] = [
    {"kind": "numeric"},
    {"kind": "hash", "buckets": 97},
    {"kind": "vocabulary", "values": VOCABULARY, "unknown": -2},
]
FEATURES: list[dict[str, Any]] = [
    {"name": f"{source}_{encoding['kind']}", "source": source, "encoding": encoding}
    for source in SOURCES
    if source != "constant"
    for encoding in ENCODINGS
]
FEATURES.insert(5, {"name": "campaign", "source": "constant", "value": 3.5})
EVERY_SOURCE = FeatureSpec.from_json(
    msgspec.json.encode({"name": "every-source", "version": "1", "features": FEATURES})
)


def reference_rows(request: BidRequest, now: float) -> list[list[float]]:
    return [
        [
            feature["value"]
            if feature["source"] == "constant"
            else reference_encode(
                reference_value(feature["source"], request, imp, now), feature["encoding"]
            )
            for feature in FEATURES
        ]
        for imp in request.imp or ()
    ]


def corpus_requests(corpus: Path) -> list[BidRequest]:
    requests = []
    for path in sorted((corpus / "valid").rglob("*.json")):
        try:
            requests.append(decode_bid_request(path.read_bytes()))
        except InvalidRequest:
            continue  # a response, or a request this bidder refuses: not a vectorizer input
    return requests


def assert_same_rows(vectorizer: Vectorizer, request: BidRequest, now: float) -> None:
    expected = np.array(reference_rows(request, now), dtype=np.float32).reshape(-1, len(FEATURES))
    np.testing.assert_array_equal(vectorizer.matrix(request, now), expected)
    np.testing.assert_array_equal(
        np.array(vectorizer.rows(request, now), dtype=np.float64).reshape(-1, len(FEATURES)),
        np.array(reference_rows(request, now), dtype=np.float64).reshape(-1, len(FEATURES)),
    )


def test_every_source_and_encoding_on_synthetic_traffic() -> None:
    vectorizer = Vectorizer(EVERY_SOURCE)
    for index, body in enumerate(generate_bid_requests(400, seed=7)):
        assert_same_rows(vectorizer, decode_bid_request(orjson.dumps(body)), 1.7e9 + index * 997)


def test_every_source_and_encoding_on_the_corpus(corpus: Path) -> None:
    vectorizer = Vectorizer(EVERY_SOURCE)
    requests = corpus_requests(corpus)
    assert requests, "the corpus holds valid requests"
    for request in requests:
        assert_same_rows(vectorizer, request, 1_700_000_000.0)


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "r", "imp": [{"id": "1", "audio": {"mimes": ["audio/mp4"]}}]}',
        b'{"id": "r", "imp": [{"id": "1", "banner": {"w": 0, "h": 50}, "bidfloor": 0}],'
        b' "dooh": {"domain": "screen.example", "publisher": {"id": "p"}}}',
        b'{"id": "r", "imp": [{"id": "1", "banner": {"format": [{"w": 320}]}}],'
        b' "site": {}, "app": null, "device": {"os": "", "geo": {"utcoffset": 100000}}}',
        b'{"id": "r", "imp": [{"id": "1", "native": {"request": "{}"}, "instl": 1}],'
        b' "app": {"domain": "app.example"}, "device": {"devicetype": 4, "make": "Apple"}}',
    ],
)
def test_sparse_and_edge_requests(body: bytes) -> None:
    assert_same_rows(Vectorizer(EVERY_SOURCE), decode_bid_request(body), 1_700_000_000.0)


def test_a_request_without_impressions_gives_no_rows() -> None:
    rows = Vectorizer(EVERY_SOURCE).matrix(BidRequest(id="r"), 0.0)
    assert rows.shape == (0, len(FEATURES))


def test_spec_values_reach_the_code_as_objects_never_as_text() -> None:
    hostile = "x'); import os; os.system('false'); ('"
    spec = FeatureSpec.from_json(
        msgspec.json.encode(
            {
                "name": hostile,
                "version": hostile,
                "features": [
                    {"name": hostile, "source": "os"},
                    {
                        "name": "v",
                        "source": "country",
                        "encoding": {"kind": "vocabulary", "values": [hostile, "USA"]},
                    },
                ],
            }
        )
    )
    vectorizer = Vectorizer(spec)
    assert hostile not in vectorizer.source
    request = decode_bid_request(
        b'{"id": "r", "imp": [{"id": "1", "native": {"request": "{}"}}],'
        b' "device": {"geo": {"country": "USA"}}}'
    )
    assert vectorizer.rows(request, 0.0)[0][1] == 1.0
