"""JSON log lines, sampled bid-path errors, and no user identifier in any log line."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from bidder.errors import ScoringError
from bidder.settings import Settings
from bidder.telemetry import JsonFormatter, SampledLog
from tests.conftest import LiveServer
from tests.server.test_bid_endpoint import banner_request, seed_settings

USER_ID = "user-7f3a9c1e5b"
BUYER_UID = "buyer-2d8e4f6a0c"
IFA = "6d92078a-8246-4ba4-ae5b-76104861e7dc"
IP = "203.0.113.77"
IPV6 = "2001:db8:85a3::8a2e:370:7334"
IDENTIFIERS = (USER_ID, BUYER_UID, IFA, IP, IPV6)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log line the bidder and its server write, formatted as in production, at debug
    level (the test's own HTTP client logs are not the bidder's)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(name) for name in ("bidder", "uvicorn")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield stream
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_a_log_line_is_one_json_object_with_its_fields(captured: io.StringIO) -> None:
    logger = logging.getLogger("bidder.test")
    logger.warning("model failed to score", extra={"kind": "timeout", "request_id": "r-1"})
    try:
        raise ValueError("broken")
    except ValueError:
        logger.exception("bid path failed")
    first, second = lines(captured)
    assert first["level"] == "warning"
    assert first["logger"] == "bidder.test"
    assert first["message"] == "model failed to score"
    assert (first["kind"], first["request_id"]) == ("timeout", "r-1")
    assert first["time"].endswith("Z")
    assert "ValueError: broken" in second["exception"]


def test_sampled_log_lets_n_lines_per_kind_and_interval_through(captured: io.StringIO) -> None:
    clock = Clock()
    sampled = SampledLog(logging.getLogger("bidder.test"), interval=10, limit=2, clock=clock)
    for _ in range(5):
        sampled.log(logging.WARNING, "timeout", "model failed to score")
    sampled.log(logging.WARNING, "throttled", "model failed to score")
    clock.now = 10.0
    sampled.log(logging.WARNING, "timeout", "model failed to score")
    logged = [(line["kind"], line["suppressed"]) for line in lines(captured)]
    # Two timeouts, the first throttled, then a new window reports the three held back.
    assert logged == [("timeout", 0), ("timeout", 0), ("throttled", 0), ("timeout", 3)]


def test_user_identifiers_never_reach_the_logs(
    live_server: Callable[[Settings], LiveServer],
    monkeypatch: pytest.MonkeyPatch,
    captured: io.StringIO,
) -> None:
    server = live_server(seed_settings(log_error_samples=1000))
    people = {
        "user": {"id": USER_ID, "buyeruid": BUYER_UID, "yob": 1980},
        "device": {"ifa": IFA, "ip": IP, "ipv6": IPV6, "devicetype": 2, "os": "android"},
    }
    invalid = [
        {**banner_request(id=""), **people},  # id missing
        {**banner_request(tmax=USER_ID), **people},  # a user id where a number belongs
        {**banner_request(imp=[{"id": IFA}]), **people},  # an impression offering nothing
        {**banner_request(), **people, "device": {**people["device"], "devicetype": IP}},
        {**banner_request(cur="USD"), **people},  # a string where an array belongs
    ]
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for body in invalid:
            assert client.post("/openrtb2/bid", json=body).status_code == 400
        runtime = server.app.state.runtime
        assert runtime is not None

        def failing_model(*_: object) -> asyncio.Future[list[float]]:
            future: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
            future.set_exception(ScoringError("endpoint timed out", reason="timeout"))
            return future

        monkeypatch.setattr(runtime.scorer, "submit", failing_model)
        scored = client.post("/openrtb2/bid", json={**banner_request(id="auction-9"), **people})
        assert scored.status_code == 204

        def broken(*_: object) -> None:
            raise RuntimeError("a bug in the decision")

        monkeypatch.undo()  # the model scores again; the decision fails
        monkeypatch.setattr(runtime.policy, "decide", broken)
        failed = client.post("/openrtb2/bid", json={**banner_request(id="auction-10"), **people})
        assert failed.status_code == 204

    output = captured.getvalue()
    logged = lines(captured)
    refused = [line for line in logged if line["message"] == "bid request refused"]
    assert len(refused) == len(invalid)
    assert {line["field"] for line in refused} == {
        "id",
        "tmax",
        "imp[0]",
        "device.devicetype",
        "cur",
    }
    model = [line for line in logged if line["message"] == "model failed to score"]
    assert [(line["kind"], line["request_id"]) for line in model] == [("timeout", "auction-9")]
    internal = [line for line in logged if line.get("kind") == "internal_error"]
    assert [line["request_id"] for line in internal] == ["auction-10"]
    for identifier in IDENTIFIERS:
        assert identifier not in output, f"{identifier} leaked into the logs"
