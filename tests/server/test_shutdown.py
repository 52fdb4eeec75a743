"""SIGTERM under load: readiness turns false, in-flight requests finish, buffered records are
written out, the process exits 0."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bidder.server import BidderApp
from bidder.server.connection_limits import LimitedHttpProtocol
from bidder.server.protocol import BidderHttpProtocol
from bidder.settings import Settings
from bidder.traffic.recordings import read_recordings
from tests.conftest import SEED_FEATURE_SPEC, SEED_MODEL, LiveServer, free_port
from tests.server.test_admission import _read_response, _request
from tests.server.test_bid_endpoint import banner_request


def test_sigterm_under_load_drops_nothing_in_flight(tmp_path: Path) -> None:
    """...and what was buffered is written out: every answered request is in a closed
    recording file (the recorder samples all of them here)."""
    port = free_port()
    env = {
        "BIDDER_RECORD_DIR": str(tmp_path),
        "BIDDER_RECORD_SAMPLE_RATE": "1",
        **os.environ,
        "BIDDER_MODEL_PATH": str(SEED_MODEL),
        "BIDDER_FEATURE_SPEC_PATH": str(SEED_FEATURE_SPEC),
        "BIDDER_BID_THRESHOLD": "0.0001",
        "BIDDER_PRICE_SLOPE": "1000",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bidder", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    results = asyncio.run(_load_then_terminate(url, process))
    output = process.communicate(timeout=40)[0]
    assert process.returncode == 0, output
    answered, failed_in_flight, readiness_after_signal = results
    assert answered > 50
    assert failed_in_flight == 0, "a request that was sent before SIGTERM got no answer"
    assert readiness_after_signal in (503, None), "readiness turned false at once"
    assert '"message":"draining"' in output
    recorded = read_recordings([tmp_path], max_records=1_000_000)
    assert not recorded.truncated
    assert not list(tmp_path.glob("*.partial"))
    assert len(recorded.requests) == answered


async def _load_then_terminate(
    url: str, process: subprocess.Popen[str]
) -> tuple[int, int, int | None]:
    port = int(url.rsplit(":", 1)[1])
    request = _request(orjson.dumps(banner_request()))
    answered = 0
    failed_in_flight = 0
    stop = asyncio.Event()
    signalled_at = math.inf

    async def worker() -> None:
        """Requests on one kept-alive connection at a time, as raw bytes: a request counts
        as sent once its bytes are in the server's socket (a client library's own work
        before it writes would blur the line between before and after the signal)."""
        nonlocal answered, failed_in_flight
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return  # the listener is closed: the server is draining
            try:
                while not stop.is_set():
                    try:
                        writer.write(request)
                        await writer.drain()
                    except OSError:
                        break  # closed by the draining server before this request went out
                    sent_at = time.monotonic()
                    try:
                        head = await reader.readuntil(b"\r\n\r\n")
                    except (asyncio.IncompleteReadError, OSError):
                        if sent_at < signalled_at:
                            failed_in_flight += 1
                        return
                    length = _content_length(head)
                    if length:
                        await reader.readexactly(length)
                    # A bid or a no-bid (a deadline under this load) are both answers.
                    assert head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 204 ")), head
                    answered += 1
                    if b"connection: close" in head.lower():
                        break
            finally:
                writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    await asyncio.sleep(1.0)
    signalled_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    readiness: int | None = None
    try:
        async with httpx.AsyncClient(base_url=url, timeout=2) as probe:
            readiness = (await probe.get("/readyz")).status_code
    except httpx.TransportError:
        readiness = None  # the listener already closed: no new connections either
    stop.set()
    await asyncio.gather(*workers)
    return answered, failed_in_flight, readiness


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@pytest.mark.parametrize("http", [BidderHttpProtocol, LimitedHttpProtocol])
def test_a_request_not_yet_read_when_shutdown_begins_is_answered(http: Any) -> None:
    """uvicorn closes idle connections at once on shutdown; one whose request is in the
    socket, unread because the event loop is busy, must get its answer first."""
    server = LiveServer(BidderApp(Settings()), free_port(), http=http)
    body = orjson.dumps(banner_request())
    with server, socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        client.sendall(_request(body))
        assert _read_response(client).startswith(b"HTTP/1.1 20")  # now idle, kept alive
        [connection] = server.server.server_state.connections
        loop_busy = threading.Event()

        def busy_then_shut_down() -> None:
            loop_busy.set()
            time.sleep(0.3)  # the client's next request arrives meanwhile, unread
            for each in list(server.server.server_state.connections):
                each.shutdown()  # as uvicorn does on SIGTERM

        connection.loop.call_soon_threadsafe(busy_then_shut_down)
        loop_busy.wait()
        client.sendall(_request(body))
        answer = _read_response(client)
        assert answer.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 204 "))
        assert b"connection: close" in answer.lower()
        assert client.recv(1) == b"", "closed once answered"


def _shut_down_connections(server: LiveServer) -> None:
    """Calls every connection's `shutdown` on the server's loop, as uvicorn does on SIGTERM."""
    done = threading.Event()

    def shut_down() -> None:
        for each in list(server.server.server_state.connections):
            each.shutdown()
        done.set()

    deadline = time.monotonic() + 10
    while not server.server.server_state.connections:
        assert time.monotonic() < deadline, "the server did not take the connection"
        time.sleep(0.01)
    next(iter(server.server.server_state.connections)).loop.call_soon_threadsafe(shut_down)
    assert done.wait(10)


@pytest.mark.parametrize("http", [BidderHttpProtocol, LimitedHttpProtocol])
def test_a_request_sent_just_after_shutdown_begins_is_answered(http: Any) -> None:
    """A client that connected a moment before shutdown sends its request after the
    connections were told to shut down: uvicorn would close the connection under it."""
    server = LiveServer(BidderApp(Settings()), free_port(), http=http)
    with server, socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        _shut_down_connections(server)
        client.sendall(_request(orjson.dumps(banner_request())))
        answer = _read_response(client)
        assert answer.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 204 "))
        assert b"connection: close" in answer.lower()
        assert client.recv(1) == b"", "closed once answered"


@pytest.mark.parametrize("http", [BidderHttpProtocol, LimitedHttpProtocol])
def test_an_idle_connection_is_closed_shortly_after_shutdown_begins(http: Any) -> None:
    server = LiveServer(BidderApp(Settings()), free_port(), http=http)
    with server, socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        _shut_down_connections(server)
        assert client.recv(1) == b"", "closed without a request"
        assert not server.server.server_state.connections
