"""Bid requests answered by the HTTP protocol itself, without an ASGI round.

Through ASGI, uvicorn spends more per request than the whole bid path does: a scope dict,
a response cycle with its event, a `receive` message, two `send` messages it inspects
header by header, and the task's extra turns around them. `BidderHttpProtocol` therefore
hands a plainly framed `POST /openrtb2/bid` (HTTP/1.1, a Content-Length, headers the bid
endpoint accepts) straight to `BidEndpoint.begin` once httptools has parsed it, and writes
the answer's bytes onto the transport itself when the scores' future is done (from a done
callback: no task per request either). Everything else, refusals included, still
goes through uvicorn and the ASGI handler, which answer the same way.

A `DirectExchange` takes the place of uvicorn's response cycle while its request is under
way, so uvicorn's own bookkeeping (pipelined requests queue behind it, a graceful shutdown
waits for it and then closes, a lost connection marks it disconnected) works unchanged.
"""

from __future__ import annotations

import asyncio
import time
from http import HTTPStatus
from typing import Final

from uvicorn._types import HTTPScope
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
from uvicorn.server import ServerState

from bidder.asgi import Headers
from bidder.server.bid import VERSION_HEADER

# Nothing ever waits on it: a direct exchange's body is complete before its bid starts.
# uvicorn sets a cycle's event when the connection is lost, so it has to be an event.
_NOBODY_WAITS: Final = asyncio.Event()
_STATUS_LINES: Final = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode())
    for status in HTTPStatus
}
_JSON: Final = b"content-type: application/json\r\n"
_CLOSE: Final = b"connection: close\r\n"


class DirectExchange(RequestResponseCycle):
    """One bid request answered without ASGI: what its answer needs, kept from its headers,
    and its body as it arrives. It stands in for uvicorn's cycle but has no ASGI side, so
    uvicorn's `__init__` (its event, its body buffer) is not run: its `run_asgi`, `send` and
    `receive` are never called."""

    def __init__(
        self,
        scope: HTTPScope,
        headers: Headers,
        version: bytes,
        gzipped: bool,
        keep_alive: bool,
    ) -> None:
        self.scope = scope  # uvicorn's, which its bookkeeping compares
        self.headers = headers
        self.version = version
        self.gzipped = gzipped
        self.keep_alive = keep_alive
        self.arrival = time.time()
        self.started = time.perf_counter()
        self.chunks: list[bytes] = []
        self.message_event = _NOBODY_WAITS
        self.disconnected = False
        self.response_started = False
        self.response_complete = False


class AnswerBytes:
    """HTTP/1.1 responses of the bid route, as bytes to write: uvicorn's default headers
    (`date`, `server`) first, as on its own responses; a no-bid, most answers, built once
    per version and connection state until the date changes."""

    __slots__ = ("_defaults", "_defaults_from", "_no_bids", "_server_state")

    def __init__(self, server_state: ServerState) -> None:
        self._server_state = server_state
        self._defaults_from: list[tuple[bytes, bytes]] | None = None
        self._defaults = b""
        self._no_bids: dict[tuple[bytes, bool], bytes] = {}

    def render(self, status: int, body: bytes, version: bytes, keep_alive: bool) -> bytes:
        defaults = self._server_state.default_headers
        if defaults is not self._defaults_from:  # uvicorn replaces the list when the date changes
            self._defaults_from = defaults
            self._defaults = b"".join(name + b": " + value + b"\r\n" for name, value in defaults)
            self._no_bids.clear()
        if status == 204:
            key = (version, keep_alive)
            answer = self._no_bids.get(key)
            if answer is None:
                answer = self._no_bids[key] = self._head(204, version, keep_alive) + b"\r\n"
            return answer
        length = b"content-length: %d\r\n\r\n" % len(body)
        return b"".join((self._head(status, version, keep_alive), _JSON, length, body))

    def _head(self, status: int, version: bytes, keep_alive: bool) -> bytes:
        return b"".join(
            (
                _STATUS_LINES[status],
                self._defaults,
                VERSION_HEADER,
                b": ",
                version,
                b"\r\n",
                b"" if keep_alive else _CLOSE,
            )
        )
