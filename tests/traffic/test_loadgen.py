"""The load generator against real servers on loopback."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from bidder.traffic.loadgen import Target, encode_requests, run, run_closed_loop, run_open_loop
from tests.conftest import LiveServer, free_port


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers 200 with the body's length for even sizes, 204 for odd ones, chunked for 7."""
    if scope["type"] != "http":
        return
    message = await receive()
    body = message.get("body", b"")
    size = len(body)
    if size % 2:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    payload = orjson.dumps({"size": size})
    # No content-length: uvicorn answers with chunked transfer encoding.
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": payload[:3], "more_body": True})
    await send({"type": "http.response.body", "body": payload[3:]})


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer(echo_app, free_port()) as running:
        yield running


def test_closed_loop_counts_every_answer(server: LiveServer) -> None:
    target = Target("127.0.0.1", server.port, "/")
    requests = encode_requests(target, [b"ab", b"abc"])
    result = run(run_closed_loop(target, requests, connections=4, duration=0.5))
    assert result.statuses.keys() == {200, 204}
    assert abs(result.statuses[200] - result.statuses[204]) <= 4
    assert result.completed == len(result.latencies)
    assert result.errors == {}


def test_refused_connections_are_counted() -> None:
    target = Target("127.0.0.1", free_port(), "/")
    result = run(
        run_closed_loop(target, encode_requests(target, [b"x"]), connections=2, duration=0.2)
    )
    assert result.completed == 0
    assert result.errors.get("ConnectionRefusedError", 0) > 0


def test_open_loop_keeps_its_schedule(server: LiveServer) -> None:
    target = Target("127.0.0.1", server.port, "/")
    result = run(run_open_loop(target, encode_requests(target, [b"ab"]), rate=2000, duration=1.0))
    assert result.sent == 2000
    assert result.statuses == {200: 2000}
    # Latency is measured from the intended send time: a late send would show in it.
    assert statistics.median(result.latencies) < 0.002
    assert result.schedule_slips < 100
