"""Hostile clients at the HTTP level, on raw sockets against the protocol `bidder serve` runs:
oversized and endless headers, slow drips, bodies shorter or longer than declared, chunked
bodies that never end, silent connections and bytes that are not HTTP. Each gets a clear
4xx (or, when an earlier response is still owed, that response and then a closed
connection), and the server goes on bidding."""

from __future__ import annotations

import re
import select
import socket
import time
from collections.abc import Iterator

import orjson
import pytest

from bidder.server import BidderApp
from bidder.server.connection_limits import LimitedHttpProtocol
from tests.conftest import LiveServer, free_port
from tests.server.test_bid_endpoint import banner_request, seed_settings

MAX_HEADER_BYTES = 4096
READ_TIMEOUT_MS = 300
KEEPALIVE_SECONDS = 1
# Long enough for any answer here; a read that reaches it fails the test instead of hanging.
SOCKET_TIMEOUT = 5.0
STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    settings = seed_settings(
        max_header_bytes=MAX_HEADER_BYTES,
        request_read_timeout_ms=READ_TIMEOUT_MS,
        keepalive_timeout_seconds=KEEPALIVE_SECONDS,
    )
    with LiveServer(BidderApp(settings), free_port(), http=LimitedHttpProtocol) as live:
        yield live


def bid_request(body: bytes | None = None, *, extra_headers: bytes = b"") -> bytes:
    body = orjson.dumps(banner_request()) if body is None else body
    return (
        b"POST /openrtb2/bid HTTP/1.1\r\nhost: bidder\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n%s\r\n%s" % (len(body), extra_headers, body)
    )


class Client:
    """One raw TCP connection to the server."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        self.socket.sendall(data)

    def drip(self, data: bytes, interval: float) -> None:
        """Send `data` a byte at a time until the server closes the connection."""
        for byte in data:
            try:
                self.socket.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                return
            time.sleep(interval)

    def read_until_closed(self) -> bytes:
        """Everything the server sends until it closes the connection."""
        chunks = []
        while True:
            try:
                chunk = self.socket.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def connect(server: LiveServer) -> Iterator[type[Client]]:
    opened: list[Client] = []

    class Tracked(Client):
        def __init__(self) -> None:
            super().__init__(server.port)
            opened.append(self)

    yield Tracked  # type: ignore[misc]
    for client in opened:
        client.close()


def statuses(answer: bytes) -> list[int]:
    return [int(status) for status in STATUS_LINE.findall(answer)]


def error_of(answer: bytes) -> str:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower()
    assert b"connection: close" in head.lower()
    error: str = orjson.loads(body)["error"]
    return error


@pytest.fixture(autouse=True)
def still_bidding(server: LiveServer) -> Iterator[None]:
    """After every hostile client, the same server answers a valid bid request."""
    yield
    client = Client(server.port)
    try:
        client.send(bid_request(extra_headers=b"connection: close\r\n"))
        assert statuses(client.read_until_closed()) == [200]
    finally:
        client.close()


def test_headers_over_the_limit_in_one_read_get_431(connect: type[Client]) -> None:
    client = connect()
    client.send(bid_request(extra_headers=b"x-padding: " + b"a" * MAX_HEADER_BYTES + b"\r\n"))
    answer = client.read_until_closed()
    assert statuses(answer) == [431]
    assert error_of(answer) == f"headers: larger than the limit of {MAX_HEADER_BYTES} bytes"


def test_many_small_headers_over_the_limit_get_431(connect: type[Client]) -> None:
    client = connect()
    many = b"".join(b"x-h%d: v\r\n" % index for index in range(1000))
    client.send(bid_request(extra_headers=many))
    answer = client.read_until_closed()
    assert statuses(answer) == [431]


def test_a_header_that_never_ends_is_cut_off_at_the_limit(connect: type[Client]) -> None:
    client = connect()
    client.send(b"POST /openrtb2/bid HTTP/1.1\r\nx-endless: ")
    sent = 0
    # Sent in pieces, as a client streaming it would; the server must not wait for the end.
    while sent < 100 * MAX_HEADER_BYTES and not select.select([client.socket], [], [], 0.005)[0]:
        client.send(b"a" * 1024)
        sent += 1024
    answer = client.read_until_closed()
    assert statuses(answer) == [431]
    assert sent <= 10 * MAX_HEADER_BYTES


def test_a_slow_drip_gets_408(connect: type[Client]) -> None:
    client = connect()
    # A byte per 100 ms: the whole request would take minutes; the server gives it 300 ms.
    client.drip(bid_request(), interval=0.1)
    answer = client.read_until_closed()
    assert statuses(answer) == [408]
    assert error_of(answer) == f"request: not received in full within {READ_TIMEOUT_MS} ms"


def test_a_body_shorter_than_declared_gets_408(connect: type[Client]) -> None:
    client = connect()
    client.send(bid_request()[:-10])
    answer = client.read_until_closed()
    assert statuses(answer) == [408]


def test_a_chunked_body_that_never_ends_gets_408(connect: type[Client]) -> None:
    client = connect()
    client.send(
        b"POST /openrtb2/bid HTTP/1.1\r\nhost: bidder\r\ncontent-type: application/json\r\n"
        b'transfer-encoding: chunked\r\n\r\n5\r\n{"id"\r\n'
    )
    answer = client.read_until_closed()
    assert statuses(answer) == [408]


def test_a_body_longer_than_declared_gets_its_answer_then_the_connection_closes(
    connect: type[Client],
) -> None:
    client = connect()
    # The surplus is read as the next request, which is not HTTP: the answer owed to the
    # first goes out, and the connection closes after it.
    client.send(bid_request() + b"\x00surplus that is not a request\r\n\r\n")
    answer = client.read_until_closed()
    assert statuses(answer) == [200]


def test_bytes_that_are_not_http_get_a_json_400(connect: type[Client]) -> None:
    client = connect()
    client.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n")
    answer = client.read_until_closed()
    assert statuses(answer) == [400]
    assert error_of(answer) == "request: not valid HTTP/1.1"


def test_a_post_without_length_gets_411(connect: type[Client]) -> None:
    client = connect()
    client.send(
        b"POST /openrtb2/bid HTTP/1.1\r\nhost: bidder\r\ncontent-type: application/json\r\n"
        b"connection: close\r\n\r\n"
    )
    answer = client.read_until_closed()
    assert statuses(answer) == [411]
    assert orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"].startswith("content-length:")


def test_a_connection_that_sends_nothing_is_closed_when_idle(connect: type[Client]) -> None:
    client = connect()
    assert client.read_until_closed() == b""


def test_blank_lines_do_not_keep_an_idle_connection_open(connect: type[Client]) -> None:
    client = connect()
    client.send(b"\r\n")
    assert client.read_until_closed() == b""


def test_a_request_in_pieces_within_the_time_is_answered(connect: type[Client]) -> None:
    client = connect()
    request = bid_request(extra_headers=b"connection: close\r\n")
    for start in range(0, len(request), 64):
        client.send(request[start : start + 64])
    assert statuses(client.read_until_closed()) == [200]
