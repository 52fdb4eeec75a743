"""Bid decisions: threshold, price, floor, currency, creatives and blocking rules."""

from __future__ import annotations

import os
from typing import Any

import msgspec
import pytest

from bidder.decision import BidPolicy, Creative, CreativeCatalog, LinearPricing, NoBidReason
from bidder.decision.policy import _RandomIds
from bidder.openrtb import decode_bid_request
from bidder.settings import DEFAULT_CREATIVES_PATH

CATALOG = CreativeCatalog(
    creatives=[
        Creative(
            crid="b1",
            kind="banner",
            w=300,
            h=250,
            adomain=["brand.example"],
            cat=["IAB2"],
            attr=[3],
            adm="<div>${AUCTION_PRICE}</div>",
        ),
        Creative(
            crid="v1",
            kind="video",
            w=640,
            h=360,
            adomain=["brand.example"],
            mimes=["video/mp4"],
            duration=30,
            nurl="https://win.example/${AUCTION_PRICE}",
        ),
    ]
)
POLICY = BidPolicy(
    threshold=0.2,
    pricing=LinearPricing(intercept=0.5, slope=10.0, max_price=5.0),
    currency="USD",
    catalog=CATALOG,
    seat="seat-1",
)


def request(imp: dict[str, Any], **fields: Any) -> Any:
    return decode_bid_request(msgspec.json.encode({"id": "r", "imp": [imp], **fields}))


BANNER = {"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 1.0}


@pytest.mark.parametrize(
    ("imp", "fields", "score", "reason"),
    [
        (BANNER, {}, 0.1, NoBidReason.BELOW_THRESHOLD),
        (BANNER, {}, float("nan"), NoBidReason.BELOW_THRESHOLD),
        ({**BANNER, "bidfloor": 4.0}, {}, 0.3, NoBidReason.BELOW_FLOOR),
        (BANNER, {"cur": ["EUR"]}, 0.5, NoBidReason.CURRENCY),
        ({**BANNER, "bidfloorcur": "EUR"}, {}, 0.5, NoBidReason.CURRENCY),
        (BANNER, {"badv": ["brand.example"]}, 0.5, NoBidReason.NO_CREATIVE),
        (BANNER, {"bcat": ["IAB2"]}, 0.5, NoBidReason.NO_CREATIVE),
        (
            {"id": "1", "banner": {"w": 300, "h": 250, "battr": [3]}},
            {},
            0.5,
            NoBidReason.NO_CREATIVE,
        ),
        ({"id": "1", "banner": {"w": 728, "h": 90}}, {}, 0.5, NoBidReason.NO_CREATIVE),
        ({"id": "1", "video": {"mimes": ["video/webm"]}}, {}, 0.5, NoBidReason.NO_CREATIVE),
        (
            {"id": "1", "video": {"mimes": ["video/mp4"], "maxduration": 15}},
            {},
            0.5,
            NoBidReason.NO_CREATIVE,
        ),
        (
            {**BANNER, "pmp": {"private_auction": 1, "deals": [{"id": "d"}]}},
            {},
            0.9,
            NoBidReason.PRIVATE_AUCTION,
        ),
    ],
)
def test_no_bid_reasons(
    imp: dict[str, Any], fields: dict[str, Any], score: float, reason: NoBidReason
) -> None:
    bid_request = request(imp, **fields)
    [decision] = POLICY.decide(bid_request, [score])
    assert decision.reason is reason
    assert POLICY.respond(bid_request, [decision]) is None


def test_price_is_linear_capped_and_never_below_floor() -> None:
    assert POLICY.pricing.price(0.3) == 3.5
    assert POLICY.pricing.price(0.9) == 5.0
    bid_request = request(BANNER, cur=["USD", "EUR"])
    [decision] = POLICY.decide(bid_request, [0.3])
    assert decision.is_bid
    response = POLICY.respond(bid_request, [decision])
    assert response is not None
    bid = response.seatbid[0].bid[0]
    assert (bid.price, bid.crid, bid.impid, bid.w, bid.h) == (3.5, "b1", "1", 300, 250)
    assert bid.adm == "<div>${AUCTION_PRICE}</div>"
    assert response.cur == "USD"
    assert response.seatbid[0].seat == "seat-1"


def test_format_sizes_and_video_pick_the_fitting_creative() -> None:
    banner = request({"id": "1", "banner": {"format": [{"w": 728, "h": 90}, {"w": 300, "h": 250}]}})
    assert POLICY.decide(banner, [0.5])[0].creative is CATALOG.creatives[0]
    video = request({"id": "1", "video": {"mimes": ["video/mp4"], "maxduration": 30}})
    assert POLICY.decide(video, [0.5])[0].creative is CATALOG.creatives[1]


def test_only_the_imps_that_clear_are_bid() -> None:
    bid_request = decode_bid_request(
        msgspec.json.encode({"id": "r", "imp": [BANNER, {**BANNER, "id": "2"}], "test": 1})
    )
    decisions = POLICY.decide(bid_request, [0.5, 0.1])
    response = POLICY.respond(bid_request, decisions)
    assert response is not None
    assert [bid.impid for bid in response.seatbid[0].bid] == ["1"]


def test_shipped_creatives_load_and_carry_the_price_macro() -> None:
    catalog = CreativeCatalog.load(DEFAULT_CREATIVES_PATH)
    assert catalog.creatives
    for creative in catalog.creatives:
        assert "${AUCTION_PRICE}" in (creative.adm or creative.nurl or "")


def test_bid_ids_are_distinct_16_digit_hex_across_buffer_refills() -> None:
    ids = _RandomIds()
    made = [ids() for _ in range(1000)]  # four refills of the buffer
    assert all(len(made_id) == 16 and int(made_id, 16) >= 0 for made_id in made)
    assert len(set(made)) == len(made)


def test_a_forked_worker_does_not_reuse_its_parents_ids() -> None:
    ids = _RandomIds()
    ids()  # the buffer now holds ids a child could repeat
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(write, ids().encode())
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read, 16).decode() != ids()
