"""Decoding never fails with anything but `InvalidRequest`, whatever the bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bidder.errors import InvalidRequest
from bidder.openrtb import BidRequest, decode_bid_request

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)
FIELDS = [
    "id",
    "imp",
    "banner",
    "video",
    "native",
    "bidfloor",
    "w",
    "h",
    "tmax",
    "site",
    "app",
    "device",
    "geo",
    "format",
    "mimes",
    "request",
    "pmp",
    "deals",
    "cur",
    "bcat",
    "badv",
]
REQUEST_LIKE = st.recursive(
    st.none() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS), children, max_size=6)
    ),
    max_leaves=40,
)


def decode_or_reject(body: bytes) -> BidRequest | None:
    try:
        return decode_bid_request(body)
    except InvalidRequest as exc:
        message = str(exc)
    assert message, "every rejection says why"
    return None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(body: bytes) -> None:
    decode_or_reject(body)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_arbitrary_json(value: object) -> None:
    decode_or_reject(json.dumps(value).encode())


@settings(max_examples=500, deadline=None)
@given(REQUEST_LIKE)
def test_request_shaped_json(value: object) -> None:
    request = decode_or_reject(json.dumps(value, allow_nan=True).encode())
    if request is not None:
        assert request.id
        assert request.imp


def test_corpus_mutations(corpus: Path) -> None:
    """Truncations and byte flips of real requests: rejected cleanly or accepted, never raised."""
    for path in sorted((corpus / "valid").glob("*.json"))[:60]:
        body = path.read_bytes()
        for cut in range(0, len(body), max(1, len(body) // 25)):
            decode_or_reject(body[:cut])
            flipped = bytearray(body)
            flipped[cut] ^= 0xFF
            decode_or_reject(bytes(flipped))


@pytest.mark.parametrize("depth", [10, 1_000, 100_000])
def test_deep_nesting(depth: int) -> None:
    body = (
        b'{"id": "1", "imp": [{"id": "1", "banner": {}}], "ext": '
        + b"[" * depth
        + b"]" * depth
        + b"}"
    )
    request = decode_or_reject(body)
    assert (request is not None) == (depth < 500)
