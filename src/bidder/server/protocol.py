"""uvicorn's httptools protocol, with the bid route's answers and its overload shedding
moved in front of ASGI.

A plainly framed bid request that is admitted is answered without ASGI once httptools has
parsed it (`direct.py` says why and how); the rest of this docstring is about shedding.

Under overload the cost that matters is what a shed request costs: every request that is
answered with a quick no-bid takes CPU from the requests being bid on. At twice the
saturation rate, bid throughput stays at 90 % of saturation only if shedding a request
costs under a tenth of bidding on it. Through ASGI, even an immediate answer pays for
uvicorn's per-request scope, response cycle and task; through httptools' callbacks alone,
for the scope and header lists uvicorn builds as it parses. So this protocol sheds at two
levels, asking the bidder's admission control first:

- a read that holds exactly one whole `POST /openrtb2/bid` on an idle connection (what
  exchanges send) is answered with the canned no-bid without being parsed beyond its
  request line and framing headers (`whole_bid_request`): a few byte searches;
- any other bid request is shed when its headers are complete: the canned no-bid goes
  straight onto the transport and the body is skipped.

Everything else (other paths, admitted bids, pipelined requests, upgrades,
`Expect: 100-continue`, anything unusual in the framing) goes through uvicorn unchanged.

It also makes uvicorn's graceful shutdown lose nothing: uvicorn closes every connection
without a response under way at once, and with it any request the event loop has not read
yet, which a busy server has plenty of, and any request a client is sending that moment.
Here a connection with unread bytes, or a request half parsed, stays open: its request is
answered, with `connection: close`, and only then is it closed; an idle one is closed after
`IDLE_CLOSE_GRACE`, unless a request arrives first, which is answered the same way.

Selected with `uvicorn.run(..., http=BidderHttpProtocol)` or a subclass (`bidder serve`
runs `connection_limits.LimitedHttpProtocol`).
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import time
from typing import Any, Final

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from bidder.errors import RequestError
from bidder.server.bid import BID_PATH, BidEndpoint, Decided, Scoring
from bidder.server.direct import AnswerBytes, DirectExchange

_BID_PATH: Final = BID_PATH.encode()
_BID_REQUEST_LINE: Final = b"POST " + _BID_PATH + b" HTTP/1.1\r\n"
_END_OF_HEADERS: Final = b"\r\n\r\n"
_CONTENT_LENGTH: Final = b"\r\ncontent-length:"
_CONNECTION: Final = b"\r\nconnection:"
# How long an idle connection stays open once shutdown begins. A client that has just
# connected, or is reusing a kept-alive connection, may have its request on the way: closed
# at once, as uvicorn does, it would see the connection drop with no answer (another worker,
# or the next server, would have taken it). A request arriving within the grace is answered,
# with `connection: close`.
IDLE_CLOSE_GRACE: Final = 0.5
# Framing the fast path leaves to httptools and uvicorn.
_UNUSUAL_HEADERS: Final = (b"\r\ntransfer-encoding:", b"\r\nexpect:", b"\r\nupgrade:")


def _shed_response(version: bytes, keep_alive: bool) -> bytes:
    connection = b"" if keep_alive else b"connection: close\r\n"
    return (
        b"HTTP/1.1 204 No Content\r\nx-openrtb-version: " + version + b"\r\n" + connection + b"\r\n"
    )


class BidderHttpProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._bid_endpoint = _find_bid_endpoint(self.app)
        self._shedding_since: float | None = None
        # Between a request's first byte and its last, httptools holds part of it.
        self._in_request = False
        # Requests answered by the fast path since the idle timer was armed: uvicorn's
        # timer is left running (re-arming per request costs more than the shedding), and
        # when it fires on a connection that has been busy, it is armed again instead.
        self._shed_while_idle_timer_ran = False
        self._shutting_down = False
        # The bid request being read, when it is answered without ASGI (`direct.py`).
        self._exchange: DirectExchange | None = None
        self._answers = AnswerBytes(server_state)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self._bid_endpoint is not None:
            self._bid_endpoint.admission.watch_loop(self.loop)

    def data_received(self, data: bytes) -> None:
        endpoint = self._bid_endpoint
        if (
            endpoint is not None
            and not self._in_request
            and endpoint.admission.overloaded()
            and self._can_answer_now()
            and not self._shutting_down
        ):
            started = time.perf_counter()
            keep_alive = whole_bid_request(data, endpoint.max_body)
            if keep_alive is not None:
                self.transport.write(_shed_response(endpoint.default_version, keep_alive))
                self.server_state.total_requests += 1
                endpoint.shed(time.perf_counter() - started)
                if keep_alive:
                    self._shed_while_idle_timer_ran = True
                else:
                    self.transport.close()
                return
        super().data_received(data)

    def timeout_keep_alive_handler(self) -> None:
        if self._shed_while_idle_timer_ran and not self.transport.is_closing():
            self._shed_while_idle_timer_ran = False
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
            return
        super().timeout_keep_alive_handler()

    def on_message_begin(self) -> None:
        self._in_request = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        endpoint = self._bid_endpoint
        if (
            endpoint is not None
            and self.url.partition(b"?")[0] == _BID_PATH
            and self.parser.get_method() == b"POST"
            and not self.root_path
            and self._can_answer_now()
            and not self._shutting_down
        ):
            if endpoint.admission.overloaded():
                self._shedding_since = time.perf_counter()
                return
            if self._begin_exchange(endpoint):
                return
        super().on_headers_complete()
        if self._shutting_down and self.cycle is not None:
            self.cycle.keep_alive = False  # answered, then closed

    def _begin_exchange(self, endpoint: BidEndpoint) -> bool:
        """Take this request past ASGI when it is a plain HTTP/1.1 one with headers the bid
        endpoint accepts and a Content-Length (so httptools bounds its body); the ASGI
        handler refuses the others, or reads their chunked bodies against the limit."""
        if self.parser.get_http_version() != "1.1":
            return False
        try:
            version, gzipped, length = endpoint.check_headers(self.headers)
        except RequestError:
            return False
        if length is None:
            return False
        self.cycle = self._exchange = DirectExchange(
            self.scope, self.headers, version, gzipped, self.parser.should_keep_alive()
        )
        return True

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown, except that a request already sent is answered, and
        an idle connection is given `IDLE_CLOSE_GRACE` for a request already on its way."""
        self._shutting_down = True
        if not self._idle():
            super().shutdown()  # answered, then closed
        elif not (self._in_request or _has_unread_bytes(self.transport)):
            self.loop.call_later(IDLE_CLOSE_GRACE, self._close_if_idle)
        # Otherwise closed after answering: keep-alive is off from now on.

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _close_if_idle(self) -> None:
        if self._idle() and not self._in_request and not self.transport.is_closing():
            self.transport.close()

    def _can_answer_now(self) -> bool:
        """Only when no earlier response is owed on this connection (HTTP answers in order)
        and the client is not waiting for a 100 Continue before it sends the body."""
        return (
            self._idle()
            and not self.pipeline
            and not self.expect_100_continue
            and not self.parser.should_upgrade()
        )

    def on_body(self, body: bytes) -> None:
        exchange = self._exchange
        if exchange is not None:
            exchange.chunks.append(body)
        elif self._shedding_since is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_request = False
        exchange = self._exchange
        if exchange is not None:
            self._exchange = None
            self._begin_bid(exchange)
            return
        started = self._shedding_since
        if started is None:
            super().on_message_complete()
            return
        self._shedding_since = None
        endpoint = self._bid_endpoint
        assert endpoint is not None
        keep_alive = self.parser.should_keep_alive()
        self.transport.write(_shed_response(endpoint.default_version, keep_alive))
        self.server_state.total_requests += 1
        endpoint.shed(time.perf_counter() - started)
        if not keep_alive:
            self.transport.close()

    def _begin_bid(self, exchange: DirectExchange) -> None:
        """The bid up to the model, here and now; its answer once the scores' future is
        done, from a callback: no task per request, no coroutines to resume."""
        endpoint = self._bid_endpoint
        assert endpoint is not None
        endpoint.admission.started()
        try:
            step = endpoint.begin(
                b"".join(exchange.chunks),
                exchange.gzipped,
                exchange.version,
                exchange.arrival,
                exchange.started,
            )
        except BaseException:
            endpoint.admission.finished()
            raise
        if not isinstance(step, Scoring):
            # Answered on the loop's next turn, as a score would be, not from inside the
            # parser's callback: uvicorn's end-of-response bookkeeping (the next pipelined
            # request, the keep-alive timer) must not run while httptools is mid-read.
            self.loop.call_soon(self._answer, exchange, step)
            return
        future = step.future
        # A graceful shutdown waits until uvicorn's task set is empty and, past its grace
        # period, cancels what is left in it: a future takes both, and is answered either way.
        self.tasks.add(future)  # type: ignore[arg-type]
        future.add_done_callback(functools.partial(self._scored, exchange, step))

    def _scored(self, exchange: DirectExchange, step: Scoring, future: asyncio.Future[Any]) -> None:
        self.tasks.discard(future)
        endpoint = self._bid_endpoint
        assert endpoint is not None
        try:
            decided = endpoint.conclude(step)
        except BaseException:
            endpoint.admission.finished()
            raise
        self._answer(exchange, decided)

    def _answer(self, exchange: DirectExchange, decided: Decided) -> None:
        endpoint = self._bid_endpoint
        assert endpoint is not None
        try:
            verdict, answer, body = decided
            exchange.response_started = True
            if not exchange.disconnected:
                self.transport.write(
                    self._answers.render(verdict[0], answer, exchange.version, exchange.keep_alive)
                )
            exchange.response_complete = True
            if not exchange.keep_alive:
                self.transport.close()
            self.on_response_complete()  # uvicorn's: the next pipelined request, or idle
            endpoint.finish(exchange.arrival, exchange.started, exchange.headers, body, verdict)
        finally:
            endpoint.admission.finished()


def whole_bid_request(data: bytes, max_body: int) -> bool | None:
    """When `data` is exactly one whole, plainly framed `POST /openrtb2/bid` (HTTP/1.1,
    a Content-Length within `max_body` and a body of that length), whether the connection
    stays open after it; None for anything else, which the parser then handles."""
    if not data.startswith(_BID_REQUEST_LINE):
        return None
    end = data.find(_END_OF_HEADERS)
    if end < 0:
        return None
    head = data[:end].lower()
    start = head.find(_CONTENT_LENGTH)
    if start < 0 or any(header in head for header in _UNUSUAL_HEADERS):
        return None
    start += len(_CONTENT_LENGTH)
    stop = head.find(b"\r\n", start)
    value = head[start:] if stop < 0 else head[start:stop]
    value = value.strip()
    if not value.isdigit() or head.find(_CONTENT_LENGTH, start) >= 0:
        return None  # not a number, or declared twice: the parser says what is wrong
    length = int(value)
    if length > max_body or len(data) != end + len(_END_OF_HEADERS) + length:
        return None
    connection = head.find(_CONNECTION)
    if connection < 0:
        return True
    stop = head.find(b"\r\n", connection + len(_CONNECTION))
    return b"close" not in (head[connection:] if stop < 0 else head[connection:stop])


def _has_unread_bytes(transport: asyncio.BaseTransport) -> bool:
    """Whether the socket holds bytes the event loop has not read yet (peeked at through a
    duplicate of its descriptor, so the transport's own state is untouched)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        with socket.socket(fileno=os.dup(sock.fileno())) as duplicate:
            return bool(duplicate.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:  # nothing to read (EAGAIN), or the connection is already gone
        return False


def _find_bid_endpoint(app: Any) -> BidEndpoint | None:
    """The bid endpoint of the app uvicorn serves, through any middleware uvicorn wrapped it in
    (they keep the wrapped app as `.app`); None for any other app."""
    for _ in range(8):
        endpoint = getattr(app, "bid", None)
        if isinstance(endpoint, BidEndpoint):
            return endpoint
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None
