"""A load generator for HTTP/1.1 servers on loopback, fast enough not to be the bottleneck.

Raw asyncio protocols on uvloop with httptools parsing the responses, keep-alive
connections, and pre-encoded requests: the generator spends its time on the wire, not in
an HTTP client library. Two modes:

- closed loop (`run_closed_loop`): C connections, each sending its next request as soon
  as the previous answer arrives; measures saturation throughput.
- open loop (`run_open_loop`): requests sent at their scheduled times whatever the answers
  (no coordinated omission), latency measured from the *intended* send time, connections
  added up to a cap when all are busy; sends that could not keep the schedule are counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httptools
import numpy as np
import uvloop


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str = "/openrtb2/bid"


def encode_requests(
    target: Target, bodies: Sequence[bytes], headers: dict[str, str] | None = None
) -> list[bytes]:
    """Pre-encoded `POST` requests: building them costs nothing during the run."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"POST {target.path} HTTP/1.1\r\nhost: {target.host}:{target.port}\r\n"
        f"content-type: application/json\r\n{extra}"
    )
    return [f"{head}content-length: {len(body)}\r\n\r\n".encode() + body for body in bodies]


@dataclass
class LoadResult:
    mode: str
    duration: float
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    schedule_slips: int = 0
    offered_rate: float | None = None

    @property
    def completed(self) -> int:
        return sum(self.statuses.values())

    @property
    def throughput(self) -> float:
        return self.completed / self.duration if self.duration else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return float(np.percentile(np.asarray(self.latencies), q) * 1000)

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "offered_rate": self.offered_rate,
            "duration_s": round(self.duration, 3),
            "sent": self.sent,
            "completed": self.completed,
            "throughput_rps": round(self.throughput, 1),
            "latency_ms": {
                name: round(self.percentile_ms(q), 3)
                for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9))
            }
            | {"max": round(max(self.latencies, default=float("nan")) * 1000, 3)},
            "status_counts": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
            "schedule_slips": self.schedule_slips,
        }


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request outstanding."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("connection closed"))

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, raw: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _connect(target: Target) -> _Connection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(_Connection, target.host, target.port)
    return protocol


def _count(table: dict[Any, int], key: Any) -> None:
    table[key] = table.get(key, 0) + 1


async def run_closed_loop(
    target: Target,
    requests: Sequence[bytes],
    *,
    connections: int,
    duration: float,
    request_timeout: float = 5.0,
) -> LoadResult:
    result = LoadResult(mode="closed", duration=duration)
    stop_at = time.perf_counter() + duration

    async def worker(offset: int) -> None:
        index = offset
        connection: _Connection | None = None
        while time.perf_counter() < stop_at:
            try:
                if connection is None or connection.closed:
                    connection = await _connect(target)
                raw = requests[index % len(requests)]
                index += connections
                started = time.perf_counter()
                result.sent += 1
                status = await asyncio.wait_for(connection.send(raw), request_timeout)
                result.latencies.append(time.perf_counter() - started)
                _count(result.statuses, status)
            except (TimeoutError, OSError, httptools.HttpParserError) as exc:
                _count(result.errors, type(exc).__name__)
                if connection is not None:
                    connection.close()
                connection = None
                await asyncio.sleep(0.001)
        if connection is not None:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(connections)))
    result.duration = time.perf_counter() - started
    return result


async def run_open_loop(
    target: Target,
    requests: Sequence[bytes],
    *,
    rate: float,
    duration: float,
    max_connections: int = 512,
    request_timeout: float = 5.0,
    warm_connections: int = 16,
) -> LoadResult:
    """Send `rate` requests per second for `duration` seconds on schedule."""
    result = LoadResult(mode="open", duration=duration, offered_rate=rate)
    loop = asyncio.get_running_loop()
    idle: list[_Connection] = [await _connect(target) for _ in range(warm_connections)]
    freed = asyncio.Event()
    total = 0
    in_flight: set[asyncio.Task[None]] = set()

    async def one(raw: bytes, intended: float, connection: _Connection) -> None:
        try:
            status = await asyncio.wait_for(connection.send(raw), request_timeout)
            result.latencies.append(time.perf_counter() - intended)
            _count(result.statuses, status)
            idle.append(connection)
            freed.set()
        except (TimeoutError, OSError, httptools.HttpParserError) as exc:
            _count(result.errors, type(exc).__name__)
            connection.close()

    interval = 1.0 / rate
    count = int(rate * duration)
    start = time.perf_counter() + 0.01
    for index in range(count):
        intended = start + index * interval
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.001:
            result.schedule_slips += 1
        if idle:
            connection = idle.pop()
        elif total + len(idle) < max_connections:
            try:
                connection = await _connect(target)
            except OSError as exc:
                _count(result.errors, type(exc).__name__)
                continue
            total += 1
        else:
            result.schedule_slips += 1
            while not idle:
                freed.clear()
                await freed.wait()
            connection = idle.pop()
        result.sent += 1
        task = loop.create_task(one(requests[index % len(requests)], intended, connection))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.gather(*in_flight)
    result.duration = time.perf_counter() - start
    for connection in idle:
        connection.close()
    return result


def run(coroutine: Any) -> LoadResult:
    """Run a load coroutine on uvloop."""
    result: LoadResult = uvloop.run(coroutine)
    return result
