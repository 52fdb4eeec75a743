"""Synthetic traffic: deterministic, valid OpenRTB, realistic spread, honest labels."""

from __future__ import annotations

from collections import Counter

import orjson

from bidder.openrtb import decode_bid_request
from bidder.traffic.synthetic import SyntheticTraffic, generate_bid_requests


def test_same_seed_same_traffic_other_seed_other_traffic() -> None:
    assert generate_bid_requests(50, seed=1) == generate_bid_requests(50, seed=1)
    assert generate_bid_requests(50, seed=1) != generate_bid_requests(50, seed=2)


def test_every_request_is_valid_openrtb() -> None:
    for request in generate_bid_requests(2000, seed=3):
        decoded = decode_bid_request(orjson.dumps(request))
        assert decoded.imp


def test_distributions_are_spread_like_real_traffic() -> None:
    requests = generate_bid_requests(3000, seed=4)
    countries = Counter(r["device"]["geo"]["country"] for r in requests)
    devices = Counter(r["device"]["devicetype"] for r in requests)
    kinds = Counter(
        k for r in requests for imp in r["imp"] for k in ("banner", "video", "native") if k in imp
    )
    apps = sum("app" in r for r in requests)
    assert len(countries) >= 8
    assert countries.most_common(1)[0][0] == "USA"
    assert set(devices) == {2, 3, 4, 5}
    assert kinds["banner"] > kinds["video"] > kinds["native"] > 0
    # Each domain is an app with probability 0.4, but a few popular ones carry the traffic.
    assert 0.2 < apps / len(requests) < 0.8
    assert max(len(r["imp"]) for r in requests) > 1


def test_labels_follow_the_hidden_probabilities() -> None:
    samples = list(SyntheticTraffic(seed=5).samples(5000))
    labels = [label for s in samples for label in s.labels]
    probabilities = [p for s in samples for p in s.probabilities]
    mean_label = sum(labels) / len(labels)
    mean_probability = sum(probabilities) / len(probabilities)
    assert 0.02 < mean_probability < 0.15
    assert abs(mean_label - mean_probability) < 0.01
