"""The load generator against real servers on loopback ports.

The HTTP server is uvicorn in a subprocess running `echo_app` below, so that the generator
and the server never share an interpreter (or its GIL); the framings uvicorn never
produces (a body ended by the close, no answer at all) come from raw sockets in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
import pytest

from bidder.traffic.loadgen import (
    LoadResult,
    Request,
    Step,
    Target,
    run,
    run_closed_loop,
    run_open_loop,
)
from tests.conftest import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/echo`: the body's SHA-256 and size; `/chunked`: the same, streamed without a
    length (so chunked); `/close`: the same, closing the connection; `/empty`: 204;
    `/status?code=N`: status N; `/sleep?ms=N`: 200 after N ms."""
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    path = scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    digest = orjson.dumps({"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)})
    status, headers, chunks = 200, [(b"content-length", str(len(digest)).encode())], [digest]
    if path == "/chunked":
        headers, chunks = [], [digest[:7], digest[7:20], digest[20:]]
    elif path == "/close":
        headers.append((b"connection", b"close"))
    elif path == "/empty":
        status, headers, chunks = 204, [], [b""]
    elif path == "/status":
        status, headers, chunks = int(query["code"]), [], [b"status"]
    elif path == "/sleep":
        await asyncio.sleep(int(query["ms"]) / 1000)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        await send({"type": "http.response.body", "body": chunk, "more_body": not last})


@pytest.fixture(scope="module")
def server() -> Iterator[Target]:
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "tests.traffic.test_loadgen:echo_app"),
            *("--host", "127.0.0.1", "--port", str(port), "--http", "httptools"),
            *("--no-access-log", "--log-level", "warning"),
        ],
        cwd=PROJECT_ROOT,
    )
    try:
        wait_for_port(port, process)
        yield Target("127.0.0.1", port)
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the test server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the test server did not start")


def echo_check(request: Request, status: int, body: bytes) -> bool:
    return status == 200 and orjson.loads(body) == {
        "sha256": hashlib.sha256(request.body).hexdigest(),
        "size": len(request.body),
    }


def bodies() -> list[bytes]:
    rng = random.Random(7)
    return [rng.randbytes(size) for size in (0, 1, 100, 1_500, 16_384, 70_000)]


def assert_only(result: LoadResult, status: int) -> None:
    assert result.completed > 0
    assert result.statuses == {status: result.completed}
    assert result.errors == {}


@pytest.mark.parametrize("path", ["/echo", "/chunked", "/close"])
def test_closed_loop_bodies_arrive_intact(server: Target, path: str) -> None:
    checked: list[bytes] = []

    def check(request: Request, status: int, body: bytes) -> bool:
        checked.append(request.body)
        return echo_check(request, status, body)

    templates = [Request("POST", path, {"content-type": "application/x"}, b) for b in bodies()]
    result = run(
        run_closed_loop(
            server, templates, connections=4, duration=2.0, max_requests=300, check=check
        )
    )
    assert_only(result, 200)
    assert result.sent == result.completed == result.latency.count == len(checked) == 300
    # The templates were cycled through, every one of them sent.
    assert set(checked) == set(bodies())
    assert result.connections == 4


def test_a_wrong_answer_counts_as_invalid(server: Target) -> None:
    templates = [Request("POST", "/echo", {}, b"one")]
    result = run(
        run_closed_loop(
            server,
            templates,
            connections=1,
            duration=1.0,
            max_requests=5,
            check=lambda _request, _status, body: body == b"something else",
        )
    )
    assert result.statuses == {200: 5}
    assert result.errors == {"invalid": 5}


def test_statuses_are_counted_including_bodiless_204(server: Target) -> None:
    templates = [
        Request("GET", "/empty", {}, b""),
        Request("GET", "/status?code=404", {}, b""),
        Request("POST", "/status?code=503", {"x-any": "header"}, b"{}"),
    ]
    result = run(run_closed_loop(server, templates, connections=3, duration=2.0, max_requests=300))
    assert result.errors == {}
    # Three templates cycled through: equal shares.
    assert result.statuses == {204: 100, 404: 100, 503: 100}


def test_a_callable_makes_each_request(server: Target) -> None:
    def make(index: int) -> Request:
        return Request("POST", "/echo", {}, f"request {index}".encode())

    result = run(
        run_closed_loop(
            server, make, connections=2, duration=1.0, max_requests=50, check=echo_check
        )
    )
    assert_only(result, 200)
    assert result.completed == 50


def test_refused_connections_are_counted() -> None:
    target = Target("127.0.0.1", free_port())
    templates = [Request("GET", "/", {}, b"")]
    closed = run(run_closed_loop(target, templates, connections=2, duration=0.2))
    assert closed.completed == 0
    assert closed.errors.get("refused", 0) >= 2
    opened = run(run_open_loop(target, templates, rate=50, duration=0.2, request_timeout=0.2))
    assert opened.completed == 0
    assert opened.errors.get("refused", 0) >= 1
    # Requests that never got a connection end as timeouts: none is lost from the count.
    assert opened.errors.get("timeout", 0) == 10


def test_slow_answers_time_out(server: Target) -> None:
    templates = [Request("GET", "/sleep?ms=2000", {}, b"")]
    result = run(
        run_closed_loop(server, templates, connections=3, duration=0.3, request_timeout=0.1)
    )
    assert result.completed == 0
    assert result.errors.keys() == {"timeout"}
    assert result.errors["timeout"] >= 3


class RawServer:
    """Accepts connections on a thread and answers each request with `reply` (which may
    be nothing) before closing."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(1)
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    request += chunk
                connection.sendall(self.reply)

    def __enter__(self) -> Target:
        self.thread.start()
        return Target("127.0.0.1", self.port)

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.listener.close()


def raw_run(reply: bytes, check: Any = None) -> LoadResult:
    with RawServer(reply) as target:
        return run(
            run_closed_loop(
                target,
                [Request("GET", "/", {}, b"")],
                connections=1,
                duration=1.0,
                max_requests=10,
                check=check,
            )
        )


def test_a_body_ended_by_the_close_is_complete() -> None:
    seen: list[bytes] = []

    def check(_request: Request, _status: int, body: bytes) -> bool:
        seen.append(body)
        return True

    result = raw_run(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end", check)
    assert_only(result, 200)
    assert result.completed == 10
    assert seen == [b"until the end"] * 10


def test_a_close_without_an_answer_is_an_error() -> None:
    result = raw_run(b"")
    assert result.completed == 0
    assert result.errors.keys() <= {"closed", "reset"}
    assert sum(result.errors.values()) == 10


def test_a_truncated_body_is_an_error() -> None:
    result = raw_run(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort")
    assert result.completed == 0
    assert result.errors.keys() <= {"closed", "reset"}
    assert sum(result.errors.values()) == 10


def test_an_unparsable_answer_is_a_protocol_error() -> None:
    result = raw_run(b"NOT HTTP AT ALL\r\n\r\n")
    assert result.completed == 0
    assert result.errors == {"protocol": 10}


def test_open_loop_keeps_its_schedule(server: Target) -> None:
    templates = [Request("GET", "/empty", {}, b"")]
    result = run(run_open_loop(server, templates, rate=2000, duration=1.0))
    assert result.offered_rate == 2000
    assert result.sent == 2000
    assert result.statuses == {204: 2000}
    assert result.errors == {}
    # Accuracy, not speed: each send's lateness against its intended time is recorded.
    assert result.send_lateness.count == 2000
    assert result.send_lateness.percentile(50) < 0.002
    assert result.latency.count == 2000


def test_open_loop_follows_steps_and_reports_each_second(server: Target) -> None:
    templates = [Request("POST", "/echo", {}, b"step")]
    steps = [Step(200, 1.0), Step(400, 1.0, end_rate=800)]
    result = run(run_open_loop(server, templates, rate=steps, series=True, check=echo_check))
    assert_only(result, 200)
    assert result.series is not None
    assert [second.sent for second in result.series] == [200, 600]
    assert [second.completed for second in result.series] == [200, 600]
    assert result.series[1].latency.count == 600
    assert result.to_dict()["series"][0]["latency_ms"]["count"] == 200


def test_open_loop_counts_waits_at_the_connection_cap(server: Target) -> None:
    # 100 ms answers at 100 requests/s need ten connections; two are allowed.
    templates = [Request("GET", "/sleep?ms=100", {}, b"")]
    result = run(
        run_open_loop(
            server, templates, rate=100, duration=0.3, max_connections=2, initial_connections=1
        )
    )
    assert_only(result, 200)
    assert result.completed == 30
    assert result.connections == 2
    assert result.cap_waits > 0
    # Waiting for a connection shows in the latency, measured from the intended send time.
    assert result.latency.max > 0.5


def test_step_schedule_integrates_the_rate() -> None:
    ramp = Step(0, 2.0, end_rate=1000)
    offsets = list(ramp.offsets())
    assert len(offsets) == ramp.requests == 1000
    assert offsets == sorted(offsets)
    assert offsets[0] == 0
    assert offsets[-1] < 2.0
    # Under a linear ramp from 0, a quarter of the requests fall in the first half.
    assert sum(offset < 1.0 for offset in offsets) == 250
    assert list(Step(100, 0.5).offsets()) == pytest.approx([k / 100 for k in range(50)])


@pytest.mark.parametrize("host", ["10.0.0.1", "192.168.1.1", "8.8.8.8"])
def test_only_loopback_targets_are_accepted(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        Target(host, 80)


def test_results_summarise_to_plain_data(server: Target) -> None:
    result = run(
        run_closed_loop(
            server, [Request("GET", "/empty", {}, b"")], connections=1, duration=0.2, series=True
        )
    )
    summary = orjson.loads(orjson.dumps(result.to_dict()))
    assert summary["statuses"] == {"204": result.completed}
    assert summary["latency_ms"]["count"] == result.completed
    assert {"p50", "p90", "p99", "p99.9", "max", "mean"} <= summary["latency_ms"].keys()
    assert summary["series"][0]["completed"] == result.completed
