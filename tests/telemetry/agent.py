"""A stand-in for the CloudWatch agent's EMF listener, on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib


class Agent:
    """A CloudWatch agent's EMF listener: newline-delimited documents over TCP."""

    def __init__(self, port: int, *, reads: bool = True) -> None:
        self.port = port
        self.reads = reads
        self.lines: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._connections: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._connections:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.append(writer)
        if not self.reads:
            return  # holds the connection open and never reads: the agent is stuck
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                self.lines.append(line.rstrip(b"\n"))
