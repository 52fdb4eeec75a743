"""A raw HTTP server for replay tests, run as `python -m tests.traffic.replay_server PORT`.

It notes when each request began to arrive (`time.perf_counter()`, the same monotonic clock
as the load generator's on Linux) with the request's `id`, served (and forgotten) by
`GET /arrivals`, and answers each bid request as its body's `ext.reply` says:
`{"status": 200, "price": P}` bids P on every impression, `{"status": N}` answers N, no
`ext.reply` is a 204 and a body that is not JSON a 400. A server whose answers are known
in advance, so a replay's report can be checked number by number.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import orjson
from loadtests.harness import ParsingServerProtocol

from bidder.traffic.loadgen import Target, run
from tests.conftest import PROJECT_ROOT, free_port
from tests.traffic.test_loadgen import wait_for_port


class _Protocol(ParsingServerProtocol):
    def __init__(self, arrivals: list[tuple[float, str | None]]) -> None:
        self.arrivals = arrivals
        self.began = 0.0
        self.body: list[bytes] = []

    def on_message_begin(self) -> None:
        self.began = time.perf_counter()
        self.body = []

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        if self.parser.get_method() == b"GET":
            self._answer(200, orjson.dumps(self.arrivals))
            self.arrivals.clear()
            return
        try:
            request = orjson.loads(b"".join(self.body))
        except orjson.JSONDecodeError:
            self.arrivals.append((self.began, None))
            self._answer(400, b'{"error": "not JSON"}')
            return
        self.arrivals.append((self.began, request.get("id")))
        reply = request.get("ext", {}).get("reply", {"status": 204})
        if reply["status"] != 200:
            self._answer(reply["status"], b"")
            return
        bids = [
            {"id": f"b{imp['id']}", "impid": imp["id"], "price": reply["price"]}
            for imp in request["imp"]
        ]
        response = {"id": request["id"], "seatbid": [{"bid": bids}], "cur": "USD"}
        self._answer(200, orjson.dumps(response))

    def _answer(self, status: int, body: bytes) -> None:
        head = f"HTTP/1.1 {status} X\r\n"
        if status != 204:
            head += f"content-length: {len(body)}\r\ncontent-type: application/json\r\n"
        self.transport.write((head + "\r\n").encode() + body)


def main(port: int) -> None:
    arrivals: list[tuple[float, str | None]] = []

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Protocol(arrivals), "127.0.0.1", port, backlog=1024
        )
        await server.serve_forever()

    run(serve())


@contextlib.contextmanager
def replay_server() -> Iterator[Target]:
    """The server in a subprocess of its own (so it never shares the generator's GIL)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.traffic.replay_server", str(port)], cwd=PROJECT_ROOT
    )
    try:
        wait_for_port(port, process)
        yield Target("127.0.0.1", port)
    finally:
        process.terminate()
        process.wait(timeout=10)


def arrivals(target: Target) -> list[tuple[float, str | None]]:
    """When each request since the last call began to arrive, with its id."""
    answer = httpx.get(f"http://{target.authority}/arrivals", timeout=10)
    return [(moment, request_id) for moment, request_id in answer.json()]


if __name__ == "__main__":
    main(int(sys.argv[1]))
