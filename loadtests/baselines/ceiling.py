"""The ceiling: the least an ASGI server can do per bid request.

Reads the body, decodes it with `orjson.loads`, answers a fixed JSON body. Nothing the
bidder does is cheaper than this, so the bidder's throughput is reported as a share of it.

    uvicorn loadtests.baselines.ceiling:app --http httptools --loop uvloop --no-access-log
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:  # the baseline imports nothing of the bidder's when it runs
    from bidder.asgi import Receive, Scope, Send

RESPONSE = orjson.dumps({"id": "fixed", "seatbid": [], "cur": "USD"})
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(RESPONSE)).encode())]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if body:
        orjson.loads(body)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": RESPONSE})
