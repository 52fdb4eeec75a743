"""The whole chain on loopback: bidder → aiobotocore → a SageMaker stand-in, no AWS account."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bidder.settings import Settings
from tests.conftest import LiveServer
from tests.faults import FaultServer
from tests.server.test_bid_endpoint import JSON_HEADERS, banner_request, seed_settings

pytestmark = pytest.mark.usefixtures("aws_credentials")


def sagemaker_settings(endpoint: FaultServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "scorer": "sagemaker",
        "sagemaker_endpoint_name": "seed",
        "sagemaker_endpoint_url": endpoint.url,
        "sagemaker_timeout_ms": 300,
        "sagemaker_read_timeout_ms": 200,
        "breaker_failure_threshold": 3,
        "breaker_probe_interval_ms": 200,
        "max_body_bytes": 262144,
        "max_decompressed_bytes": 262144,
        "max_imps": 100,
        # Generous, so that the endpoint's own timeouts, not the request's, end a call.
        "deadline_ceiling_ms": 2000,
    }
    return seed_settings(**{**values, **overrides})


def _without_tmax(body: bytes) -> bytes:
    document = orjson.loads(body)
    if isinstance(document, dict):
        document.pop("tmax", None)
    return orjson.dumps(document)


def decisions(client: httpx.Client, body: bytes) -> tuple[int, list[tuple[str, float, str]]]:
    response = client.post("/openrtb2/bid", content=body, headers=JSON_HEADERS)
    if response.status_code != 200:
        return response.status_code, []
    bids = [bid for seat in response.json()["seatbid"] for bid in seat["bid"]]
    return 200, sorted((bid["impid"], bid["price"], bid["crid"]) for bid in bids)


def test_sagemaker_decisions_equal_embedded_decisions(
    live_server: Callable[[Settings], LiveServer], endpoint: FaultServer, corpus: Path
) -> None:
    # Budgets far beyond any call, so that a busy machine cannot turn a bid into a
    # deadline no-bid on one side only.
    patient = {"deadline_ceiling_ms": 5000, "deadline_default_ms": 5000}
    embedded = live_server(
        seed_settings(max_body_bytes=262144, max_decompressed_bytes=262144, max_imps=100, **patient)
    )
    remote = live_server(
        sagemaker_settings(
            endpoint, sagemaker_timeout_ms=4000, sagemaker_read_timeout_ms=4000, **patient
        )
    )
    # Without tmax every request has the same budget on both sides: a short tmax could
    # rightly let the in-process model score where a round trip would not fit.
    bodies = [
        _without_tmax(path.read_bytes()) for path in sorted((corpus / "valid").glob("*.json"))[::4]
    ]
    outcomes: dict[int, int] = {}
    with httpx.Client(base_url=embedded.url) as local, httpx.Client(base_url=remote.url) as chain:
        for body in bodies:
            expected = decisions(local, body)
            assert decisions(chain, body) == expected
            outcomes[expected[0]] = outcomes.get(expected[0], 0) + 1
    assert outcomes.get(200, 0) > 10, "the comparison must cover real bids"
    assert endpoint.requests >= len(bodies) - outcomes.get(400, 0)


@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        ("stall", "timeout"),
        ("slow", "read_timeout"),
        ("model_error", "model_error"),
        ("service_unavailable", "service_unavailable"),
        ("throttled", "throttled"),
        ("reset", "connection_reset"),
        ("down", "connection_refused"),
    ],
)
def test_endpoint_faults_give_no_bids_never_5xx(
    live_server: Callable[[Settings], LiveServer], endpoint: FaultServer, mode: str, kind: str
) -> None:
    # A stall outlasts the read timeout too; the overall timeout must answer first.
    read_timeout = 1000 if mode == "stall" else 200
    server = live_server(
        sagemaker_settings(
            endpoint, breaker_failure_threshold=1000, sagemaker_read_timeout_ms=read_timeout
        )
    )
    endpoint.delay = 0.25
    if mode == "down":
        endpoint.stop()
    else:
        endpoint.mode = mode
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for _ in range(3):
            # A budget (tmax) longer than the endpoint's timeouts: they, not it, end the call.
            response = client.post("/openrtb2/bid", json=banner_request(tmax=1000))
            assert response.status_code == 204
            assert response.elapsed.total_seconds() < 0.9, "answered at the overall timeout"
        metrics = client.get("/metrics").text
    assert f'bidder_model_call_failures_total{{kind="{kind}",scorer="sagemaker"}} 3.0' in metrics
    assert 'bidder_no_bids_total{reason="model_error"} 3.0' in metrics


def test_a_stalled_endpoint_costs_a_request_no_more_than_its_budget(
    live_server: Callable[[Settings], LiveServer], endpoint: FaultServer
) -> None:
    server = live_server(
        sagemaker_settings(endpoint, sagemaker_timeout_ms=5000, sagemaker_read_timeout_ms=5000)
    )
    endpoint.mode = "stall"
    with httpx.Client(base_url=server.url, timeout=5) as client:
        # tmax 60 ms less the 20 ms network allowance: a 40 ms budget.
        response = client.post("/openrtb2/bid", json=banner_request(tmax=60))
        assert response.status_code == 204
        assert response.elapsed.total_seconds() < 1.0
        assert response.elapsed.total_seconds() >= 0.04
        text = client.get("/metrics").text
    assert 'bidder_no_bids_total{reason="deadline"} 1.0' in text


def test_breaker_opens_then_bidding_resumes_after_healing(
    live_server: Callable[[Settings], LiveServer], endpoint: FaultServer
) -> None:
    server = live_server(sagemaker_settings(endpoint))
    with httpx.Client(base_url=server.url, timeout=5) as client:
        assert client.post("/openrtb2/bid", json=banner_request()).status_code == 200
        endpoint.mode = "service_unavailable"
        for _ in range(3):
            assert client.post("/openrtb2/bid", json=banner_request()).status_code == 204
        calls = endpoint.requests
        for _ in range(5):
            assert client.post("/openrtb2/bid", json=banner_request()).status_code == 204
        assert endpoint.requests == calls, "open breaker: no calls"
        assert "bidder_circuit_breaker_state 1.0" in client.get("/metrics").text
        endpoint.mode = "ok"
        import time

        deadline = time.monotonic() + 3
        status = 204
        while status != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
            status = client.post("/openrtb2/bid", json=banner_request()).status_code
        assert status == 200
        metrics = client.get("/metrics").text
    assert "bidder_circuit_breaker_state 0.0" in metrics
    assert 'bidder_no_bids_total{reason="circuit_open"}' in metrics


def test_unreachable_endpoint_at_start_is_not_ready_until_it_answers(
    live_server: Callable[[Settings], LiveServer], endpoint: FaultServer
) -> None:
    endpoint.stop()
    server = live_server(sagemaker_settings(endpoint))
    with httpx.Client(base_url=server.url, timeout=5) as client:
        assert client.get("/readyz").status_code == 503
        assert client.post("/openrtb2/bid", json=banner_request()).status_code == 204
        endpoint.start()
        import time

        deadline = time.monotonic() + 5
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/readyz").json()["scorer"] == "sagemaker"
