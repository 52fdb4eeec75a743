"""Admission control: requests beyond what can be answered in time are shed with a no-bid."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import uvloop

from bidder.server import BidderApp
from bidder.server.admission import IDLE_BEATS, LAG_INTERVAL, AdmissionControl
from bidder.server.connection_limits import LimitedHttpProtocol
from bidder.server.protocol import BidderHttpProtocol, whole_bid_request
from tests.conftest import LiveServer, free_port
from tests.faults import FaultServer
from tests.server.test_bid_endpoint import JSON_HEADERS, banner_request, seed_settings
from tests.server.test_sagemaker_chain import sagemaker_settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_nothing_is_shed_below_the_minimum_concurrency() -> None:
    admission = AdmissionControl(max_queue_delay=0.02, min_concurrency=3)
    for _ in range(3):
        assert not admission.overloaded()
        admission.started()
    assert admission.overloaded()
    admission.finished()
    assert not admission.overloaded()


def test_the_limit_is_the_peak_completion_rate_times_the_queue_delay() -> None:
    clock = Clock()
    admission = AdmissionControl(max_queue_delay=0.02, min_concurrency=4, clock=clock)

    def complete(count: int, every: float) -> None:
        for _ in range(count):
            admission.started()
            clock.now += every
            admission.finished()

    # Steps that are powers of two keep the clock exact. 32,768 completions/s: 20 ms is
    # 655 requests in flight. The first check past the 0.1 s window is at 3,296.
    complete(3296, 2**-15)
    assert admission.limit == int(32768 * 0.02)
    # A quieter window (4,096/s) does not drop the limit to the quiet rate: the peak decays.
    complete(416, 2**-12)
    assert admission.limit == int(32768 * 0.9 * 0.02)


def test_the_limit_never_falls_below_the_minimum() -> None:
    clock = Clock()
    admission = AdmissionControl(max_queue_delay=0.001, min_concurrency=50, clock=clock)
    for _ in range(64):
        admission.started()
        clock.now += 1.0
        admission.finished()
    assert admission.limit == 50


def _hold_the_loop(admission: AdmissionControl, turns: list[float]) -> asyncio.Future[list[bool]]:
    """Keep the running loop busy for consecutive turns, `turns[i]` seconds each, as an
    overload does; the future gets whether admission said "overloaded" at each turn's start
    (after the lag timer, which runs first in a turn)."""
    loop = asyncio.get_running_loop()
    seen: list[bool] = []
    done: asyncio.Future[list[bool]] = loop.create_future()

    def hold(index: int) -> None:
        seen.append(admission.overloaded())
        if index == len(turns):
            done.set_result(seen)
            return
        time.sleep(turns[index])
        loop.call_soon(hold, index + 1)

    loop.call_soon(hold, 0)
    return done


LOOPS = pytest.mark.parametrize(
    "new_loop", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)


@LOOPS
def test_a_loop_running_late_sheds_until_it_is_on_time_again(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def scenario() -> tuple[list[bool], bool]:
        admission = AdmissionControl(max_queue_delay=1.0, min_concurrency=64, max_loop_lag=0.02)
        admission.watch_loop(asyncio.get_running_loop())
        await asyncio.sleep(0.005)
        seen = await _hold_the_loop(admission, [0.05] * 8 + [0.0] * 2)
        await asyncio.sleep(0.1)  # idle: the timer is on time again
        return seen, admission.overloaded()

    with asyncio.Runner(loop_factory=new_loop) as runner:
        seen, after = runner.run(scenario())
    # Late in three turns running: shedding (whether the timer runs before or after the
    # other callbacks of a turn, and in which turn, depends on the event loop).
    assert seen[0] is False
    assert True in seen
    assert after is False


@LOOPS
def test_a_late_turn_or_two_are_a_pause_not_a_backlog(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def scenario() -> list[bool]:
        admission = AdmissionControl(max_queue_delay=1.0, min_concurrency=64, max_loop_lag=0.02)
        admission.watch_loop(asyncio.get_running_loop())
        await asyncio.sleep(0.005)
        return await _hold_the_loop(admission, [0.1, 0.1, 0.0, 0.0, 0.0])  # collections, say

    with asyncio.Runner(loop_factory=new_loop) as runner:
        assert True not in runner.run(scenario())


def test_a_server_whose_loop_runs_late_sheds_what_arrives_meanwhile() -> None:
    settings = seed_settings(admission_max_loop_lag_ms=5)
    body = orjson.dumps(banner_request())
    with (
        LiveServer(BidderApp(settings), free_port()) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as client,
    ):
        client.sendall(_request(body))
        assert _read_response(client).startswith(b"HTTP/1.1 200 ")
        [connection] = server.server.server_state.connections
        loop = connection.loop
        held = threading.Event()

        def hold(turns: int) -> None:  # a backlog's long turns, one after the other
            held.set()
            time.sleep(0.02)
            if turns > 1:
                loop.call_soon(hold, turns - 1)

        loop.call_soon_threadsafe(hold, 25)
        held.wait()
        time.sleep(0.3)  # several late turns have passed, and more are to come
        client.sendall(_request(body))
        assert _read_response(client).startswith(b"HTTP/1.1 204 ")
        assert _overload_count(server.url) == 1
        admission = server.app.bid.admission
        deadline = time.monotonic() + 5
        while admission.overloaded() and time.monotonic() < deadline:
            time.sleep(0.01)  # until the loop is on time again
        client.sendall(_request(body))
        assert _read_response(client).startswith(b"HTTP/1.1 200 ")


def test_the_lag_is_watched_on_each_new_loop_once() -> None:
    admission = AdmissionControl(max_queue_delay=1.0, min_concurrency=64, max_loop_lag=0.02)
    timers = []
    for _ in range(2):

        async def watch_twice() -> None:
            loop = asyncio.get_running_loop()
            admission.watch_loop(loop)
            admission.watch_loop(loop)
            timers.append(admission._lag_timer)
            await asyncio.sleep(0.01)  # it keeps re-arming itself meanwhile

        asyncio.run(watch_twice())
    assert timers[0] is not timers[1]


@LOOPS
def test_the_lag_timer_stops_when_idle_and_the_next_request_starts_it(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def scenario() -> list[bool]:
        admission = AdmissionControl(max_queue_delay=1.0, min_concurrency=64, max_loop_lag=0.02)
        admission.watch_loop(asyncio.get_running_loop())
        seen = [admission.watching]
        admission.started()  # a request in flight keeps it running, however long
        await asyncio.sleep(IDLE_BEATS * LAG_INTERVAL * 2)
        seen.append(admission.watching)
        admission.finished()
        for _ in range(500):  # about IDLE_BEATS beats, on a loaded machine perhaps more
            if not admission.watching:
                break
            await asyncio.sleep(0.01)
        seen.append(admission.watching)
        admission.started()
        seen.append(admission.watching)
        admission.finished()
        return seen

    with asyncio.Runner(loop_factory=new_loop) as runner:
        assert runner.run(scenario()) == [True, True, False, True]


pytestmark = pytest.mark.usefixtures("aws_credentials")


def _slow_bidder(endpoint: FaultServer, http: Any) -> LiveServer:
    """A bidder whose model calls take a second, and that admits two requests at a time."""
    settings = sagemaker_settings(
        endpoint,
        sagemaker_timeout_ms=5000,
        sagemaker_read_timeout_ms=5000,
        deadline_ceiling_ms=5000,
        deadline_default_ms=5000,
        admission_min_concurrency=2,
        admission_max_queue_ms=0.001,
        batch_max_rows=1,
    )
    return LiveServer(BidderApp(settings), free_port(), http=http)


def _overload_count(url: str) -> float:
    metrics = httpx.get(f"{url}/metrics").text
    line = next(
        x for x in metrics.splitlines() if x.startswith('bidder_no_bids_total{reason="overload"}')
    )
    return float(line.rsplit(" ", 1)[1])


@pytest.mark.parametrize(
    "http", [BidderHttpProtocol, "httptools"], ids=["in-protocol", "in-asgi-handler"]
)
def test_requests_beyond_the_limit_are_shed_and_the_admitted_ones_answered(
    endpoint: FaultServer, http: Any
) -> None:
    body = orjson.dumps(banner_request(tmax=None))
    with _slow_bidder(endpoint, http) as server:
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        endpoint.mode, endpoint.delay = "slow", 1.0

        async def scenario() -> tuple[list[int], list[int]]:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:

                async def post() -> int:
                    response = await client.post(
                        "/openrtb2/bid", content=body, headers=JSON_HEADERS
                    )
                    return response.status_code

                admitted = [asyncio.create_task(post()) for _ in range(2)]
                await asyncio.to_thread(_until_endpoint_saw, endpoint, 3)
                shed = [await post() for _ in range(3)]
                return [await task for task in admitted], shed

        admitted, shed = asyncio.run(scenario())
        assert admitted == [200, 200]
        assert shed == [204, 204, 204]
        assert _overload_count(server.url) == 3
        # Once the admitted requests are answered, the next one is bid on again.
        endpoint.mode = "ok"
        response = httpx.post(f"{server.url}/openrtb2/bid", content=body, headers=JSON_HEADERS)
        assert response.status_code == 200


def test_a_shed_answer_keeps_or_closes_the_connection_as_the_client_asked(
    endpoint: FaultServer,
) -> None:
    body = orjson.dumps(banner_request(tmax=None))
    with _slow_bidder(endpoint, BidderHttpProtocol) as server:
        endpoint.mode, endpoint.delay = "slow", 1.0
        holders = [_send(server.port, body) for _ in range(2)]
        _until_endpoint_saw(endpoint, 3)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
            for _ in range(2):  # two sheds on one kept-alive connection
                connection.sendall(_request(body))
                assert _read_response(connection).startswith(b"HTTP/1.1 204 ")
            connection.sendall(_request(body, close=True))
            answer = _read_response(connection)
            assert answer.startswith(b"HTTP/1.1 204 ")
            assert b"connection: close" in answer.lower()
            assert connection.recv(1) == b"", "the server closed the connection"
        for holder in holders:
            assert _read_response(holder).startswith(b"HTTP/1.1 200 ")
            holder.close()


def _until_endpoint_saw(endpoint: FaultServer, requests: int) -> None:
    """The warm-up's call, then those of the requests admitted (the endpoint holds them)."""
    deadline = time.monotonic() + 10
    while endpoint.requests < requests:
        assert time.monotonic() < deadline, "the endpoint never saw the admitted requests"
        time.sleep(0.01)


def _request(body: bytes, close: bool = False) -> bytes:
    connection = b"connection: close\r\n" if close else b""
    return (
        b"POST /openrtb2/bid HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        + connection
        + b"content-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def _send(port: int, body: bytes) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(_request(body))
    return connection


def _read_response(connection: socket.socket) -> bytes:
    """One response, and not a byte of the next: answers to pipelined requests can arrive in
    one segment, so the bytes are peeked at and only this response's are taken."""
    while True:
        data = connection.recv(65536, socket.MSG_PEEK)
        assert data, "connection closed before a response"
        head, found, _ = data.partition(b"\r\n\r\n")
        if found:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            size = len(head) + len(found) + length
            if len(data) >= size:
                return connection.recv(size, socket.MSG_WAITALL)
        time.sleep(0.001)


@pytest.mark.parametrize(
    ("data", "keep_alive"),
    [
        (_request(b"{}"), True),
        (_request(b"{}", close=True), False),
        (_request(b"{}").replace(b"content-length", b"Content-Length"), True),
        (_request(b"{}").replace(b"host: test", b"connection: keep-alive"), True),
        # Everything else is left to the parser, which sheds at the end of the headers or
        # says what is wrong.
        (_request(b"{}")[:-1], None),  # body not all there yet
        (_request(b"{}") + _request(b"{}"), None),  # pipelined
        (_request(b"{}").replace(b"POST /openrtb2/bid", b"POST /openrtb2/bid?x=1"), None),
        (_request(b"{}").replace(b"HTTP/1.1", b"HTTP/1.0"), None),
        (_request(b"{}").replace(b"content-length: 2", b"content-length: x"), None),
        (_request(b"{}").replace(b"host: test", b"content-length: 2"), None),  # twice
        (_request(b"{}").replace(b"host: test", b"expect: 100-continue"), None),
        (_request(b"{}").replace(b"host: test", b"transfer-encoding: chunked"), None),
        (_request(b"{}" * 600), None),  # over the body limit used here
        (_request(b"{}").replace(b"\r\n\r\n", b"\r\n"), None),
    ],
)
def test_the_fast_path_takes_only_one_whole_plainly_framed_bid_request(
    data: bytes, keep_alive: bool | None
) -> None:
    assert whole_bid_request(data, max_body=1000) is keep_alive


@pytest.mark.parametrize("http", [BidderHttpProtocol, LimitedHttpProtocol])
def test_every_way_a_shed_request_arrives_is_answered_in_order(
    endpoint: FaultServer, http: Any
) -> None:
    body = orjson.dumps(banner_request(tmax=None))
    whole = _request(body)
    chunked = (
        b"POST /openrtb2/bid HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )
    with _slow_bidder(endpoint, http) as server:
        endpoint.mode, endpoint.delay = "slow", 1.0
        holders = [_send(server.port, body) for _ in range(2)]
        _until_endpoint_saw(endpoint, 3)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
            connection.sendall(whole)  # one read: the fast path
            connection.sendall(whole[:40])  # in parts: shed when the headers are complete
            time.sleep(0.05)
            connection.sendall(whole[40:])
            connection.sendall(whole + whole)  # pipelined
            connection.sendall(chunked)
            for _ in range(5):
                assert _read_response(connection).startswith(b"HTTP/1.1 204 ")
        assert _overload_count(server.url) == 5
        for holder in holders:
            assert _read_response(holder).startswith(b"HTTP/1.1 200 ")
            holder.close()


def test_a_connection_busy_with_shed_requests_is_not_closed_as_idle(
    endpoint: FaultServer,
) -> None:
    """The fast path leaves uvicorn's idle timer running; when it fires on a connection that
    has been busy since, it is armed again rather than closing a connection in use."""
    body = orjson.dumps(banner_request(tmax=None))
    settings = sagemaker_settings(
        endpoint,
        sagemaker_timeout_ms=5000,
        deadline_ceiling_ms=5000,
        deadline_default_ms=5000,
        admission_min_concurrency=1,
        admission_max_queue_ms=0.001,
        batch_max_rows=1,
    )
    server = LiveServer(BidderApp(settings), free_port(), http=LimitedHttpProtocol)
    server.server.config.timeout_keep_alive = 1  # `bidder serve` passes its setting so
    with server:
        endpoint.mode, endpoint.delay = "slow", 10.0
        holder = _send(server.port, body)
        _until_endpoint_saw(endpoint, 2)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
            for _ in range(10):  # 2.5 s of sheds, more than twice the idle limit
                connection.sendall(_request(body))
                assert _read_response(connection).startswith(b"HTTP/1.1 204 ")
                time.sleep(0.25)
            connection.settimeout(5)
            # Idle now: closed within two idle limits.
            assert connection.recv(1) == b""
        holder.close()
