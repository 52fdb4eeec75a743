"""Synthetic traffic: deterministic, valid OpenRTB, realistic spread, honest labels."""

from __future__ import annotations

import time
from collections import Counter
from statistics import mean

import orjson
import pytest

from bidder.openrtb import decode_bid_request
from bidder.traffic.synthetic import (
    COUNTRIES,
    SIMULATED_WEEK_START,
    WEEK_SECONDS,
    LabelledRequest,
    SyntheticTraffic,
    generate_bid_requests,
)
from tests.schemas import validator


@pytest.fixture(scope="module")
def samples() -> list[LabelledRequest]:
    return list(SyntheticTraffic(seed=4).samples(6000))


def test_same_seed_same_traffic_other_seed_other_traffic() -> None:
    assert generate_bid_requests(50, seed=1) == generate_bid_requests(50, seed=1)
    assert generate_bid_requests(50, seed=1) != generate_bid_requests(50, seed=2)
    first, second = SyntheticTraffic(seed=3), SyntheticTraffic(seed=3)
    assert list(first.samples(50)) == list(second.samples(50))


def test_seeds_share_a_world_unless_told_otherwise() -> None:
    assert SyntheticTraffic(seed=1).inventory == SyntheticTraffic(seed=2).inventory
    other_world = SyntheticTraffic(seed=1, world_seed=5).inventory
    assert other_world != SyntheticTraffic(seed=1).inventory


def test_every_request_is_valid_openrtb_2_6(samples: list[LabelledRequest]) -> None:
    schema = validator("bid-request", "2.6")
    for sample in samples[:2000]:
        schema.validate(sample.request)
        decoded = decode_bid_request(orjson.dumps(sample.request))
        assert decoded.imp is not None
        assert len(decoded.imp) == len(sample.labels) == len(sample.probabilities)


def test_native_requests_are_json_strings(samples: list[LabelledRequest]) -> None:
    natives = [imp["native"] for s in samples for imp in s.request["imp"] if "native" in imp]
    assert natives
    assert all(orjson.loads(native["request"])["assets"] for native in natives)


def test_geography_and_time_are_consistent(samples: list[LabelledRequest]) -> None:
    offsets = {
        (country.code, city.name): city.utcoffset
        for country in COUNTRIES
        for city in country.cities
    }
    for sample in samples:
        geo = sample.request["device"]["geo"]
        assert offsets[geo["country"], geo["city"]] == geo["utcoffset"]
        assert SIMULATED_WEEK_START <= sample.timestamp < SIMULATED_WEEK_START + WEEK_SECONDS


def test_distributions_are_spread_like_real_traffic(samples: list[LabelledRequest]) -> None:
    requests = [s.request for s in samples]
    imps = [imp for r in requests for imp in r["imp"]]
    countries = Counter(r["device"]["geo"]["country"] for r in requests)
    devices = Counter(r["device"]["devicetype"] for r in requests)
    kinds = Counter(k for imp in imps for k in ("banner", "video", "native") if k in imp)
    sizes = {(imp["banner"].get("w"), imp["banner"].get("h")) for imp in imps if "banner" in imp}
    currencies = Counter(imp.get("bidfloorcur") for imp in imps)
    inventory = Counter((r.get("site") or r["app"])["id"] for r in requests)

    assert len(countries) >= 12
    assert countries.most_common(1)[0][0] == "USA"
    assert set(devices) == {1, 2, 3, 4, 5}
    assert devices.most_common(1)[0][0] == 4  # phones
    assert 0.3 < sum("app" in r for r in requests) / len(requests) < 0.5
    assert kinds["banner"] > kinds["video"] > kinds["native"] > 0
    assert len(sizes - {(None, None)}) >= 7
    assert any("format" in imp["banner"] for imp in imps if "banner" in imp)
    assert currencies["USD"] > 10 * currencies["EUR"] > 0
    assert max(len(r["imp"]) for r in requests) > 1
    assert all(80 <= r["tmax"] <= 300 for r in requests)
    # Zipf-like: hundreds of sites and apps, the most popular far ahead of the median one.
    assert len(inventory) > 200
    counts = sorted(inventory.values(), reverse=True)
    assert counts[0] > 20 * counts[len(counts) // 2]


def test_labels_follow_the_hidden_probabilities(samples: list[LabelledRequest]) -> None:
    labels = [label for s in samples for label in s.labels]
    probabilities = [p for s in samples for p in s.probabilities]
    assert 0.02 < mean(probabilities) < 0.08
    assert abs(mean(labels) - mean(probabilities)) < 0.01


def test_phones_convert_best_in_the_local_evening(samples: list[LabelledRequest]) -> None:
    by_period: dict[str, list[float]] = {"evening": [], "night": []}
    for sample in samples:
        device = sample.request["device"]
        if device["devicetype"] != 4:
            continue
        hour = time.gmtime(sample.timestamp + device["geo"]["utcoffset"] * 60).tm_hour
        period = "evening" if 19 <= hour <= 23 else "night" if 5 <= hour <= 9 else None
        if period:
            by_period[period].extend(sample.probabilities)
    assert mean(by_period["evening"]) > 1.3 * mean(by_period["night"])
