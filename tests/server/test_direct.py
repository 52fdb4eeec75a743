"""Bid requests answered by the protocol without ASGI (`bidder.server.direct`): the same
answers, byte for byte, as the ASGI handler gives, in order, on kept-alive and closed
connections alike."""

from __future__ import annotations

import gzip
import socket
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from bidder.server import BidderApp
from bidder.server.connection_limits import LimitedHttpProtocol
from bidder.server.direct import DirectExchange
from bidder.server.protocol import BidderHttpProtocol
from tests.conftest import LiveServer, free_port
from tests.server.test_admission import _read_response
from tests.server.test_bid_endpoint import banner_request, seed_settings

BID = orjson.dumps(banner_request())
NO_BID = orjson.dumps(
    banner_request(imp=[{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 90}])
)


def _post(body: bytes, *headers: bytes) -> bytes:
    head = b"".join(header + b"\r\n" for header in headers)
    return (
        b"POST /openrtb2/bid HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        + head
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


CASES = {
    "bid": _post(BID),
    "no-bid": _post(NO_BID),
    "2.5": _post(BID, b"x-openrtb-version: 2.5"),
    "gzip": _post(gzip.compress(BID), b"content-encoding: gzip"),
    "not JSON": _post(b"{nope"),
    "invalid": _post(orjson.dumps({"id": "r", "imp": "x"})),
    "gzip bomb": _post(gzip.compress(b" " * 100_000), b"content-encoding: gzip"),
    "truncated gzip": _post(gzip.compress(BID)[:-9], b"content-encoding: gzip"),
    # Refused by their headers: the ASGI handler answers these in both servers.
    "wrong type": _post(BID).replace(b"application/json", b"text/plain"),
    "unknown version": _post(BID, b"x-openrtb-version: 3.0"),
}


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[LiveServer, LiveServer]]:
    """The bidder behind the protocol `bidder serve` runs and behind plain uvicorn."""
    with (
        LiveServer(BidderApp(seed_settings()), free_port(), http=LimitedHttpProtocol) as direct,
        LiveServer(BidderApp(seed_settings()), free_port(), http="httptools") as plain,
    ):
        for server in (direct, plain):
            _wait_until_ready(server.port)
        yield direct, plain


def _wait_until_ready(port: int) -> None:
    ready = b"GET /readyz HTTP/1.1\r\nhost: test\r\n\r\n"
    for _ in range(500):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(ready)
            if _read_response(connection).startswith(b"HTTP/1.1 200 "):
                return
        time.sleep(0.01)
    pytest.fail("the bidder did not become ready")


def _exchange(port: int, data: bytes, answers: int = 1) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(data)
        return [_read_response(connection) for _ in range(answers)]


def _comparable(response: bytes) -> tuple[bytes, list[bytes], Any]:
    """Status line, headers but the date, and the body with the random ids blanked."""
    head, _, body = response.partition(b"\r\n\r\n")
    status, *headers = head.split(b"\r\n")
    kept = sorted(h for h in headers if not h.lower().startswith((b"date:", b"content-length:")))
    if not body:
        return status, kept, None
    document = orjson.loads(body)
    if "bidid" in document:
        document["bidid"] = "-"
        for seat in document["seatbid"]:
            for bid in seat["bid"]:
                bid["id"] = "-"
    return status, kept, document


@pytest.mark.parametrize("case", CASES)
def test_the_direct_answer_is_the_asgi_answer(
    servers: tuple[LiveServer, LiveServer], case: str
) -> None:
    direct, plain = servers
    [answer] = _exchange(direct.port, CASES[case])
    [expected] = _exchange(plain.port, CASES[case])
    assert _comparable(answer) == _comparable(expected)


def test_the_cases_cover_bids_no_bids_and_refusals(servers: tuple[LiveServer, LiveServer]) -> None:
    direct, _ = servers
    statuses = {_exchange(direct.port, data)[0].split(b" ")[1] for data in CASES.values()}
    assert statuses == {b"200", b"204", b"400", b"413", b"415"}


def test_pipelined_requests_are_answered_in_order(servers: tuple[LiveServer, LiveServer]) -> None:
    """A direct exchange under way holds back the requests behind it, whichever path
    answers them."""
    direct, _ = servers
    order = ["bid", "no-bid", "wrong type", "bid", "not JSON", "no-bid"]
    answers = _exchange(direct.port, b"".join(CASES[case] for case in order), len(order))
    statuses = [answer.split(b" ")[1] for answer in answers]
    assert statuses == [b"200", b"204", b"415", b"200", b"400", b"204"]


def test_a_request_arriving_in_pieces_is_answered(servers: tuple[LiveServer, LiveServer]) -> None:
    direct, _ = servers
    data = CASES["bid"]
    with socket.create_connection(("127.0.0.1", direct.port), timeout=10) as connection:
        for start in range(0, len(data), 97):
            connection.sendall(data[start : start + 97])
        assert _read_response(connection).startswith(b"HTTP/1.1 200 ")
        connection.sendall(CASES["no-bid"])  # and the connection is kept
        assert _read_response(connection).startswith(b"HTTP/1.1 204 ")


def test_connection_close_is_answered_then_closed(servers: tuple[LiveServer, LiveServer]) -> None:
    direct, _ = servers
    with socket.create_connection(("127.0.0.1", direct.port), timeout=10) as connection:
        connection.sendall(_post(BID, b"connection: close"))
        answer = _read_response(connection)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b"\r\nconnection: close\r\n" in answer
        assert connection.recv(1) == b""


@pytest.mark.parametrize("http", [BidderHttpProtocol, LimitedHttpProtocol])
def test_plain_requests_take_the_direct_path_and_others_do_not(
    http: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[DirectExchange] = []
    original = DirectExchange.__init__

    def counted(self: DirectExchange, *args: Any) -> None:
        original(self, *args)
        taken.append(self)

    monkeypatch.setattr(DirectExchange, "__init__", counted)
    chunked = (
        b"POST /openrtb2/bid HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(BID), BID)
    )
    with LiveServer(BidderApp(seed_settings()), free_port(), http=http) as server:
        _wait_until_ready(server.port)
        for data in (CASES["bid"], CASES["gzip"], CASES["not JSON"]):
            _exchange(server.port, data)
        assert len(taken) == 3
        for data in (chunked, CASES["wrong type"], _post(BID).replace(b"HTTP/1.1", b"HTTP/1.0")):
            assert _exchange(server.port, data)[0].startswith(b"HTTP/1.")
        assert len(taken) == 3
        # Every request counted in flight is counted out, once its answer is out (the server's
        # thread does that bookkeeping after the write the client already read).
        admission = server.app.bid.admission
        deadline = time.monotonic() + 5
        while admission.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert admission.in_flight == 0
