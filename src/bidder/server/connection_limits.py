"""The bid server's HTTP protocol: the limits uvicorn's httptools protocol does not have.

uvicorn bounds neither the size of a request's headers nor the time a request may take to
arrive when it runs on httptools (its `h11_max_incomplete_event_size` is for h11 only, and
httptools has no knob), and it closes idle connections only after a first response. A
client could therefore hold memory with an endless header, hold a connection and a
waiting handler by dripping a body a byte at a time, or open connections and send nothing.
`LimitedHttpProtocol` adds, in front of everything `BidderHttpProtocol` does:

- `max_header_bytes`: the request line and headers. While headers are still arriving, the
  bytes received since the read in which the request began are counted, so a header that
  never ends is refused once that many bytes have come; a header block completed within
  one read is measured when it completes (only when that read was large enough to hold
  too much, so a usual request pays one comparison).
- `request_read_timeout_ms`: from the read in which a request begins to its last byte. A
  request that arrives whole in one read, as exchanges send them, never arms a timer.
- `keepalive_timeout_seconds` also from the moment a connection opens, not only after
  its first response.

A refused request is answered with `{"error": ...}` naming the limit: 431 for headers over
`max_header_bytes`, 408 for a request not read within `request_read_timeout_ms`, and 400 for
bytes that are not HTTP/1.1 (instead of uvicorn's plain text). The connection is then
closed, since its framing can no longer be trusted. When an earlier request on the
connection is still owed its response, that response goes out first and the connection
closes after it (HTTP answers in order, so the refusal itself cannot be sent). uvicorn's
warning about unparsable requests is throttled: hostile clients must not flood the logs.
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import TimerHandle
from http import HTTPStatus
from typing import Any, Final

import orjson
from uvicorn.config import Config
from uvicorn.server import ServerState

from bidder.server.protocol import BidderHttpProtocol
from bidder.settings import Settings
from bidder.telemetry import Throttle

_DEFAULTS: Final = Settings.model_construct()
# ": " and CRLF around every header, as sent.
_HEADER_FRAMING_BYTES: Final = 4


class _ThrottledWarnings(logging.Filter):
    """uvicorn warns once per request it cannot parse; at most one per message per second."""

    def __init__(self) -> None:
        super().__init__()
        self._throttle = Throttle()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno != logging.WARNING or self._throttle.allow(str(record.msg))


logging.getLogger("uvicorn.error").addFilter(_ThrottledWarnings())


class _LimitExceeded(Exception):
    """Raised inside a parser callback to stop httptools; uvicorn then calls
    `send_400_response`, which answers the refusal kept aside instead."""


class LimitedHttpProtocol(BidderHttpProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        endpoint = self._bid_endpoint
        settings = endpoint.settings if endpoint is not None else _DEFAULTS
        self._max_header_bytes = settings.max_header_bytes
        self._read_timeout = settings.request_read_timeout_ms / 1000
        self._read_timer: TimerHandle | None = None
        self._awaiting_headers = False
        self._read_bytes = 0  # the size of the read being parsed
        self._request_bytes = 0  # bytes read since (and with) the read the request began in
        self._first_read_bytes = 0
        self._refusal: tuple[HTTPStatus, str] | None = None
        self._draining = False  # refused: what the client still sends is dropped

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms its idle timer only after a response; a silent connection would stay.
        self._arm_keep_alive()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._draining:
            return
        self._read_bytes = len(data)
        self._request_bytes += self._read_bytes
        super().data_received(data)
        if self._draining or self.transport.is_closing():
            return
        if not self._in_request:
            # uvicorn disarmed the idle timer on these bytes; if they began no request (blank
            # lines between requests) and no response is owed, the connection is idle again.
            if self.timeout_keep_alive_task is None and self._idle():
                self._arm_keep_alive()
            return
        if (
            self._awaiting_headers
            and self._request_bytes - self._first_read_bytes > self._max_header_bytes
        ):
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, self._headers_too_large())
            return
        if self._read_timer is None:
            self._read_timer = self.loop.call_later(self._read_timeout, self._read_timed_out)

    def on_message_begin(self) -> None:
        self._awaiting_headers = True
        self._request_bytes = self._first_read_bytes = self._read_bytes
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        if self._request_bytes > self._max_header_bytes and self._header_bytes() > (
            self._max_header_bytes
        ):
            self._refusal = (HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, self._headers_too_large())
            raise _LimitExceeded
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm_read_timer()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes httptools cannot parse, which includes a limit raised
        from inside a parser callback: that limit's refusal, kept aside, wins."""
        refusal = self._refusal or (HTTPStatus.BAD_REQUEST, "request: not valid HTTP/1.1")
        self._refusal = None
        self._refuse(*refusal)

    def _refuse(self, status: HTTPStatus, message: str) -> None:
        """Answer `status` with a JSON error and close the connection, or, when an earlier
        response is still owed, stop reading and close once that response is out."""
        self._disarm_read_timer()
        self._in_request = False
        cycle = self.cycle
        if self._can_answer():
            body = orjson.dumps({"error": message})
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status.value, status.phrase.encode(), len(body), body)
            )
            if cycle is not None and cycle.scope is self.scope:
                # The app waits for the rest of this body: it is not coming.
                cycle.disconnected = True
                cycle.message_event.set()
            self._close_after_draining()
        elif cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False  # uvicorn closes the connection after this response
            self.flow.pause_reading()
        else:
            self.transport.close()

    def _close_after_draining(self) -> None:
        """Close once the client has read the refusal. Closing with its bytes still unread
        would make the kernel send a reset, which can destroy the refusal before the client
        reads it; so the sending side is shut and what the client still sends is dropped,
        until it closes too or `request_read_timeout_ms` has passed."""
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._draining = True
        self._read_timer = self.loop.call_later(self._read_timeout, self.transport.close)

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        self._refuse(
            HTTPStatus.REQUEST_TIMEOUT,
            f"request: not received in full within {self._read_timeout * 1000:.0f} ms",
        )

    def _idle(self) -> bool:
        """Whether no response is owed on this connection."""
        cycle = self.cycle
        return (cycle is None or cycle.response_complete) and not self.pipeline

    def _can_answer(self) -> bool:
        """Whether a response may be written now: none is under way for this request, and
        every earlier request on the connection has had its response (HTTP answers in order)."""
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # this request reached the app
            return not cycle.response_started
        return self._idle()

    def _header_bytes(self) -> int:
        return len(self.url) + sum(
            len(name) + len(value) + _HEADER_FRAMING_BYTES for name, value in self.headers
        )

    def _headers_too_large(self) -> str:
        return f"headers: larger than the limit of {self._max_header_bytes} bytes"

    def _arm_keep_alive(self) -> None:
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def _disarm_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
