"""The load generator's own ceiling: an ASGI app that answers 204 without reading the body.

Whatever the generator reaches against this is the most it can measure; every server in the
benchmark must stay well below it for its figures to be the server's, not the generator's.
"""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
