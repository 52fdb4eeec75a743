"""The Prometheus metric set: documented, exported, observed on the bid path, and served on
a port of its own when asked."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client import CollectorRegistry

from bidder.errors import ConfigurationError
from bidder.server import BidderApp
from bidder.settings import Settings
from bidder.telemetry import Metrics
from bidder.telemetry.scrape import MetricsServer
from tests.conftest import PROJECT_ROOT, LiveServer, free_port, held_port
from tests.server.test_bid_endpoint import banner_request, seed_settings

METRICS_DOC = (PROJECT_ROOT / "docs" / "METRICS.md").read_text()


def sample(exposition: str, name: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exported")


def exported_families(exposition: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", exposition, flags=re.MULTILINE))


def test_every_bidder_metric_is_documented_and_every_documented_one_exported(
    live_server: Callable[[Settings], LiveServer],
) -> None:
    server = live_server(seed_settings())
    with httpx.Client(base_url=server.url, timeout=5) as client:
        client.post("/openrtb2/bid", json=banner_request())
        exposition = client.get("/metrics").text
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", METRICS_DOC, flags=re.MULTILINE))
    exported = {name for name in exported_families(exposition) if name.startswith("bidder_")}
    assert exported == {name for name in documented if name.startswith("bidder_")}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= exported_families(
        exposition
    )


def test_bid_prices_are_observed_once_per_bid(
    live_server: Callable[[Settings], LiveServer],
) -> None:
    server = live_server(seed_settings())
    prices = []
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for number in range(5):
            request = banner_request(id=f"r{number}")
            request["imp"].append({"id": "2", "banner": {"w": 300, "h": 250}, "bidfloor": 0.1})
            response = client.post("/openrtb2/bid", json=request)
            if response.status_code == 200:
                for seat in response.json()["seatbid"]:
                    prices += [bid["price"] for bid in seat["bid"]]
        exposition = client.get("/metrics").text
    assert prices, "the seed settings make the bidder bid"
    assert sample(exposition, "bidder_bid_price_count") == len(prices)
    assert sample(exposition, "bidder_bid_price_sum") == pytest.approx(sum(prices))
    assert sample(exposition, 'bidder_impressions_total{decision="bid"}') == len(prices)


def test_shed_requests_and_requests_in_flight_are_counted() -> None:
    app = BidderApp(seed_settings())
    registry = app.metrics.registry
    admission = app.bid.admission
    for _ in range(3):
        admission.started()
    app.bid.shed(0.0001)  # what the protocol and the endpoint call when they shed
    app.metrics.flush()
    assert registry.get_sample_value("bidder_in_flight_requests") == 3
    assert registry.get_sample_value("bidder_shed_requests_total") == 1
    assert registry.get_sample_value("bidder_no_bids_total", {"reason": "overload"}) == 1
    admission.finished()
    app.metrics.flush()
    assert registry.get_sample_value("bidder_in_flight_requests") == 2


def test_the_recorder_and_reloader_record_through_metrics_methods() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.recorder_written(10)
    metrics.recorder_dropped(2)
    metrics.recorder_queue_depth.set(7)
    metrics.model_reloaded("ok")
    metrics.model_reloaded("refused")
    metrics.model_reloaded("refused")
    metrics.flush()
    registry = metrics.registry
    assert registry.get_sample_value("bidder_recorder_records_total", {"outcome": "written"}) == 10
    assert registry.get_sample_value("bidder_recorder_records_total", {"outcome": "dropped"}) == 2
    assert registry.get_sample_value("bidder_recorder_queue_depth") == 7
    assert registry.get_sample_value("bidder_model_reloads_total", {"outcome": "refused"}) == 2


def test_series_exist_at_zero_before_their_first_event() -> None:
    metrics = Metrics(CollectorRegistry())
    get = metrics.registry.get_sample_value
    assert get("bidder_no_bids_total", {"reason": "deadline"}) == 0
    assert get("bidder_recorder_records_total", {"outcome": "dropped"}) == 0
    assert get("bidder_model_reloads_total", {"outcome": "ok"}) == 0
    assert get("bidder_shed_requests_total") == 0


def test_metrics_port_serves_metrics_and_the_bid_port_does_not(
    live_server: Callable[[Settings], LiveServer],
) -> None:
    metrics_port = free_port()
    server = live_server(seed_settings(metrics_port=metrics_port))
    with httpx.Client(base_url=server.url, timeout=5) as client:
        assert client.post("/openrtb2/bid", json=banner_request()).status_code in (200, 204)
        assert client.get("/metrics").status_code == 404
        assert client.get("/readyz").status_code == 200
    scrape = f"http://127.0.0.1:{metrics_port}/metrics"
    text = ""
    for _ in range(50):  # values arrive with the next flush, within a second
        text = httpx.get(scrape, timeout=5).text
        if sample(text, "bidder_request_duration_seconds_count") == 1:
            break
        time.sleep(0.1)
    assert sample(text, "bidder_request_duration_seconds_count") == 1
    assert sample(text, "bidder_ready") == 1


def test_a_metrics_port_in_use_is_refused_naming_the_setting() -> None:
    with (
        held_port() as port,
        pytest.raises(ConfigurationError, match=f"BIDDER_METRICS_PORT={port}"),
    ):
        MetricsServer("127.0.0.1", port, CollectorRegistry())
