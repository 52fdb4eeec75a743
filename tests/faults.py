"""A SageMaker stand-in on a loopback port that can be told to misbehave.

It speaks just enough HTTP/1.1 for aiobotocore: it reads a request (headers and a
Content-Length body), then, by its current `mode`, answers with real scores from the model,
answers late, never answers, answers with a SageMaker error, resets the connection, or is
not listening at all.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from bidder.scoring import EmbeddedScorer
from bidder.scoring.payloads import decode_rows, encode_scores, media_type

ERRORS = {
    "model_error": (424, "ModelError"),
    "validation_error": (400, "ValidationError"),
    "throttled": (429, "ThrottlingException"),
    "service_unavailable": (503, "ServiceUnavailable"),
    "internal_failure": (500, "InternalFailure"),
}


class FaultServer:
    def __init__(self, model: Path, port: int) -> None:
        self.scorer = EmbeddedScorer.from_path(model)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.mode = "ok"
        self.delay = 0.0
        self.requests = 0
        self.last_headers: dict[str, str] = {}
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        # A connection accepted just before a stop reaches its handler only after it: the
        # handler must drop it then, as a dead process would, rather than serve it.
        self._listening = False
        self._clients: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def start(self) -> None:
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(5)

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self._listening = True

    async def _stop(self) -> None:
        self._listening = False
        if self._server is not None:
            self._server.close()
            for writer in list(self._clients):
                writer.transport.abort()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._listening:
            writer.transport.abort()
            return
        self._clients.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests += 1
                self.last_headers = headers
                await self._answer(writer, headers, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def _answer(
        self, writer: asyncio.StreamWriter, headers: dict[str, str], body: bytes
    ) -> None:
        mode = self.mode
        if mode == "stall":
            await asyncio.sleep(3600)
        if mode == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            raise ConnectionResetError
        if mode == "slow":
            await asyncio.sleep(self.delay)
        if mode in ERRORS:
            status, kind = ERRORS[mode]
            payload = orjson.dumps({"message": f"injected {kind}"})
            extra = f"x-amzn-errortype: {kind}\r\n"
            content_type = "application/json"
        elif mode == "wrong_count":
            status, payload, extra, content_type = 200, b"0.5\n0.5\n", "", "text/csv"
        else:
            content_type = media_type(headers.get("content-type"))
            rows = decode_rows(body, content_type, self.scorer.num_features)
            status, extra = 200, "x-amzn-invoked-production-variant: AllTraffic\r\n"
            payload = encode_scores(self.scorer.predict(rows).tolist(), content_type)
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n{extra}"
            f"content-length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()


@contextmanager
def fault_server(model: Path, port: int) -> Iterator[FaultServer]:
    server = FaultServer(model, port)
    server.start()
    try:
        yield server
    finally:
        server.close()
