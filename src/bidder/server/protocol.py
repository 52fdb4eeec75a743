"""uvicorn's httptools protocol, with overload shedding moved in front of ASGI.

Under overload the cost that matters is what a shed request costs: every request that is
answered with a quick no-bid takes CPU from the requests being bid on. Through ASGI, even an
immediate answer pays for uvicorn's per-request scope, response cycle and task, which is
as much as half of what bidding costs. This protocol asks the bidder's admission control
when a bid request's headers are complete and, when it says shed, answers the canned no-bid
straight onto the transport and skips the body, so shedding costs little more than parsing
the request. Everything else (other paths, admitted bids, pipelined requests, upgrades,
`Expect: 100-continue`) goes through uvicorn unchanged.

Selected with `uvicorn.run(..., http=BidderHttpProtocol)`; `bidder serve` does this.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from bidder.server.bid import BID_PATH, BidEndpoint

_BID_PATH: Final = BID_PATH.encode()


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

    def on_headers_complete(self) -> None:
        endpoint = self._bid_endpoint
        if (
            endpoint is not None
            and endpoint.admission.overloaded()
            and self._can_answer_now()
            and self.url.partition(b"?")[0] == _BID_PATH
            and self.parser.get_method() == b"POST"
        ):
            self._shedding_since = time.perf_counter()
            return
        super().on_headers_complete()

    def _can_answer_now(self) -> bool:
        """Only when no earlier response is owed on this connection (HTTP answers in order)
        and the client is not waiting for a 100 Continue before it sends the body."""
        cycle = self.cycle
        return (
            (cycle is None or cycle.response_complete)
            and not self.pipeline
            and not self.expect_100_continue
            and not self.parser.should_upgrade()
        )

    def on_body(self, body: bytes) -> None:
        if self._shedding_since is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
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
