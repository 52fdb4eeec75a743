"""Where EMF documents go: standard output, or the CloudWatch agent's TCP endpoint.

Both sinks put documents on a bounded queue that one background task drains, so a slow
pipe or an agent that is down never holds up the event loop the bid path runs on. A
document that cannot be delivered (queue full, agent down) is dropped and counted, with a
warning at most once a minute; the TCP sink connects again for the next document.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from abc import ABC, abstractmethod
from typing import IO, Any, Final

from bidder.errors import ConfigurationError
from bidder.telemetry.logging import Throttle

logger = logging.getLogger("bidder.emf")

SINK_PATTERN: Final = re.compile(
    r"^tcp://(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})$"
)
WARNING_INTERVAL_SECONDS: Final = 60.0


class Sink(ABC):
    """A bounded queue of documents and the task that delivers them in order.

    `written` and `dropped` are counters (prometheus children) of the documents' fates.
    """

    def __init__(self, *, written: Any, dropped: Any, max_queued: int) -> None:
        self._written = written
        self._dropped = dropped
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(max_queued)
        self._task: asyncio.Task[None] | None = None
        self._throttle = Throttle(WARNING_INTERVAL_SECONDS)

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain())

    def offer(self, document: bytes) -> None:
        """Queue `document` without waiting; drop it when the queue is full."""
        try:
            self._queue.put_nowait(document)
        except asyncio.QueueFull:
            self._drop("queue full")

    async def close(self, grace: float) -> None:
        """Deliver what is queued, for at most `grace` seconds, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        while not self._queue.empty():
            self._queue.get_nowait()
            self._drop("shutting down")
        await self._disconnect()

    async def _drain(self) -> None:
        while True:
            document = await self._queue.get()
            try:
                problem = await self._deliver(document + b"\n")
            except asyncio.CancelledError:
                self._drop("shutting down")  # cut off mid-write by `close`
                raise
            finally:
                self._queue.task_done()
            if problem is None:
                self._written.inc()
            else:
                self._drop(problem)

    def _drop(self, problem: str) -> None:
        self._dropped.inc()
        if self._throttle.allow("dropped"):
            suppressed = self._throttle.take_suppressed("dropped")
            logger.warning(
                "EMF document dropped",
                extra={"sink": self.name, "problem": problem, "also_dropped": suppressed},
            )

    @property
    @abstractmethod
    def name(self) -> str:
        """The sink as configured, for logs."""

    @abstractmethod
    async def _deliver(self, line: bytes) -> str | None:
        """Write one line; None when written, else what went wrong."""

    async def _disconnect(self) -> None:
        return None


class StdoutSink(Sink):
    """One JSON line per document on standard output (a container's log driver, Lambda).

    Each line is written in one call, from a thread: a blocked pipe holds up this sink
    only. Lines under the pipe's atomic size (4 KiB) never interleave with other writers'.
    """

    def __init__(self, stream: IO[bytes] | None = None, **options: Any) -> None:
        super().__init__(**options)
        self._stream = stream if stream is not None else sys.stdout.buffer

    @property
    def name(self) -> str:
        return "stdout"

    async def _deliver(self, line: bytes) -> str | None:
        try:
            await asyncio.to_thread(self._write, line)
        except (OSError, ValueError) as exc:
            return f"write failed: {exc}"
        return None

    def _write(self, line: bytes) -> None:
        self._stream.write(line)
        self._stream.flush()


class TcpSink(Sink):
    """Newline-delimited documents over one TCP connection to the CloudWatch agent
    (its `emf` listener, port 25888 by default), opened on demand and again after the
    agent went away."""

    def __init__(self, host: str, port: int, *, timeout: float, **options: Any) -> None:
        super().__init__(**options)
        self.host = host
        self.port = port
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def name(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    async def _deliver(self, line: bytes) -> str | None:
        try:
            async with asyncio.timeout(self._timeout):
                writer = await self._connection()
                writer.write(line)
                await writer.drain()
        except (OSError, TimeoutError) as exc:
            await self._disconnect()
            return f"agent unreachable: {type(exc).__name__}: {exc}"
        return None

    async def _connection(self) -> asyncio.StreamWriter:
        # The agent never sends anything: end of stream means it closed the connection,
        # and writing on would lose the document without an error.
        if self._writer is not None and self._reader is not None:
            if not self._reader.at_eof() and not self._writer.is_closing():
                return self._writer
            await self._disconnect()
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._writer

    async def _disconnect(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def parse_tcp_address(spec: str) -> tuple[str, int]:
    """`tcp://host:port` or `tcp://[ipv6]:port` as (host, port)."""
    match = SINK_PATTERN.match(spec)
    if match is None:
        raise ConfigurationError(
            f"BIDDER_EMF_SINK={spec!r}: expected off, stdout or tcp://host:port"
        )
    port = int(match["port"])
    if not 1 <= port <= 65535:
        raise ConfigurationError(f"BIDDER_EMF_SINK={spec!r}: port {port} is out of range")
    return match["ipv6"] or match["host"], port
