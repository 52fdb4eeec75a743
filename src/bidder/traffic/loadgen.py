"""An HTTP/1.1 load generator for servers on loopback, fast enough not to be what is measured.

Raw `asyncio.Protocol` connections (on uvloop when it is installed) with keep-alive,
requests encoded once before the run, and responses parsed by httptools from callbacks:
no task, future or timer per request, so one core drives well over 15,000 requests/s,
and the heap frozen out of the garbage collector's reach for each run, so that no full
collection pauses the sender.
Each connection carries one request at a time (no pipelining). Two modes:

- closed loop (`run_closed_loop`): C connections, each sending its next request as soon
  as the previous answer arrives, for a duration: the server's saturation throughput.
- open loop (`run_open_loop`): requests sent at their scheduled times whatever the answers
  (no coordinated omission), at a fixed rate or along steps and ramps. Latency counts from
  the *intended* send time, so a stalled server cannot hide its queue behind a stalled
  sender. Connections are added, up to a cap, whenever all are busy; sends later than a
  threshold and requests that had to wait for a connection at the cap are counted.

Responses are framed by Content-Length, chunked transfer encoding or the connection's
close. Errors are counted by kind: `refused` and `connect` (connecting failed), `reset`
(the connection broke), `closed` (the server closed it before answering), `timeout` (no
complete answer within the per-request timeout, counted from the intended send time),
`protocol` (an unparsable response) and `invalid` (an answer the caller's check refused).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import gc
import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, ParamSpec, Protocol, TypeVar, cast

import httptools

from bidder.traffic.histogram import Histogram

T = TypeVar("T")
P = ParamSpec("P")

# Closed-loop connections that failed wait this long before reconnecting, so a server that
# is down is probed, not hammered.
RECONNECT_DELAY = 0.01
# uvloop's timers have millisecond granularity and fire up to ~2 ms late: the open-loop
# sender sleeps on a timer until this close to a send, then spins on the event loop.
SPIN_WINDOW = 0.003
# A sender that is behind sends without waiting; it still yields to the event loop this
# often so that answers keep being read.
BURST = 32
_FRAMING_HEADERS = frozenset((b"content-length", b"transfer-encoding"))
_BODILESS_STATUSES = frozenset((204, 304))
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))


class Request(NamedTuple):
    """One request template; plain `(method, path, headers, body)` tuples work too."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


RequestSource = (
    Sequence[Request | tuple[str, str, Mapping[str, str], bytes]] | Callable[[int], Request]
)
# Called with the request sent, the answer's status and body: False (or raising) counts
# the answer as `invalid`.
ResponseCheck = Callable[[Request, int, bytes], bool]
# Called with the position of the request's template in the source (its index, for a
# callable source), the answer's status and body, for every complete answer.
AnswerCallback = Callable[[int, int, bytes], None]
# Runs beside an open-loop run's sends (e.g. to show progress) and is cancelled at its end.
Watcher = Callable[["LoadResult"], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Target:
    host: str
    port: int

    def __post_init__(self) -> None:
        # Load is only ever meant for servers on this machine.
        if self.host != "localhost" and not ipaddress.ip_address(self.host).is_loopback:
            raise ValueError(f"the load generator only targets loopback, not {self.host}")

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class Schedule(Protocol):
    """A stretch of an open-loop run: `requests` sends at `offsets()` from its start (in
    order), lasting `duration` seconds. `Step` is one; a replay's recorded times are another."""

    @property
    def requests(self) -> int: ...

    @property
    def duration(self) -> float: ...

    def offsets(self) -> Iterator[float]: ...


@dataclass(frozen=True)
class Step:
    """`rate` requests/s for `duration` seconds, ramping linearly to `end_rate` if given."""

    rate: float
    duration: float
    end_rate: float | None = None

    def __post_init__(self) -> None:
        if self.rate < 0 or (self.end_rate or 0) < 0 or self.duration <= 0:
            raise ValueError(f"rates must be >= 0 and durations > 0: {self}")

    @property
    def requests(self) -> int:
        end = self.rate if self.end_rate is None else self.end_rate
        return round((self.rate + end) / 2 * self.duration)

    def offsets(self) -> Iterator[float]:
        """Intended send times from the start of the step."""
        start = self.rate
        end = self.rate if self.end_rate is None else self.end_rate
        # Request k goes out when the integral of the rate reaches k:
        # start*t + slope*t^2/2 = k, solved in a form that is stable for slope -> 0.
        half_slope = (end - start) / (2 * self.duration)
        if self.requests:
            yield 0.0
        for k in range(1, self.requests):
            yield 2 * k / (start + math.sqrt(start * start + 4 * half_slope * k))


def encode_request(request: Request, authority: str) -> bytes:
    method, path, headers, body = request
    lines = [f"{method} {path} HTTP/1.1", f"host: {authority}"]
    lines.extend(
        f"{name}: {value}"
        for name, value in headers.items()
        if name.lower() not in ("host", "content-length")
    )
    if body or method.upper() in _BODY_METHODS:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class SecondStats:
    """What happened to the requests intended for one second of the run."""

    second: int
    sent: int = 0
    completed: int = 0
    errors: int = 0
    latency: Histogram = field(default_factory=Histogram)

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.second,
            "sent": self.sent,
            "completed": self.completed,
            "errors": self.errors,
            "latency_ms": self.latency.to_dict(),
        }


@dataclass
class PhaseStats:
    """What happened to the requests scheduled in one schedule (step, ramp) of an open-loop
    run: its offered load against what it got."""

    index: int
    # Seconds from the run's first scheduled send.
    start: float
    duration: float
    offered_start_rate: float
    offered_end_rate: float
    scheduled: int
    sent: int = 0
    late_sends: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latency: Histogram = field(default_factory=Histogram)

    @property
    def completed(self) -> int:
        return sum(self.statuses.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.index + 1,
            "start_s": round(self.start, 3),
            "duration_s": round(self.duration, 3),
            "offered_rate": round(self.scheduled / self.duration, 1),
            "offered_start_rate": round(self.offered_start_rate, 1),
            "offered_end_rate": round(self.offered_end_rate, 1),
            "sent": self.sent,
            "completed": self.completed,
            "achieved_rate": round(self.completed / self.duration, 1),
            "late_sends": self.late_sends,
            "errors": self.errors,
            "statuses": {str(status): n for status, n in sorted(self.statuses.items())},
            "latency_ms": self.latency.to_dict(),
        }


@dataclass
class LoadResult:
    mode: Literal["closed", "open"]
    duration: float = 0.0
    offered_rate: float | None = None
    # The most connections established at once.
    connections: int = 0
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency: Histogram = field(default_factory=Histogram)
    # Open loop: how late each request was written against its schedule.
    send_lateness: Histogram = field(default_factory=Histogram)
    late_sends: int = 0
    cap_waits: int = 0
    series: list[SecondStats] | None = None
    # Open loop: one entry per schedule (step, ramp) of the run, in order.
    phases: list[PhaseStats] = field(default_factory=list)
    # `time.perf_counter()` at the first intended send (open loop) or the first connect.
    start: float = 0.0

    @property
    def completed(self) -> int:
        return sum(self.statuses.values())

    @property
    def achieved_rate(self) -> float:
        return self.completed / self.duration if self.duration > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "mode": self.mode,
            "offered_rate": None if self.offered_rate is None else round(self.offered_rate, 1),
            "duration_s": round(self.duration, 3),
            "connections": self.connections,
            "sent": self.sent,
            "completed": self.completed,
            "achieved_rps": round(self.achieved_rate, 1),
            "statuses": {str(status): n for status, n in sorted(self.statuses.items())},
            "errors": dict(sorted(self.errors.items())),
            "latency_ms": self.latency.to_dict(),
        }
        if self.mode == "open":
            summary |= {
                "send_lateness_ms": self.send_lateness.to_dict(),
                "late_sends": self.late_sends,
                "cap_waits": self.cap_waits,
            }
        if self.phases:
            summary["phases"] = [phase.to_dict() for phase in self.phases]
        if self.series is not None:
            summary["series"] = [second.to_dict() for second in self.series]
        return summary


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying at most one request at a time."""

    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.busy = False
        self.intended = 0.0
        self.request: Request | None = None
        self.position = 0
        self.headers_done = False
        self.framed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, raw: bytes, request: Request, position: int, intended: float) -> None:
        assert self.transport is not None
        self.busy = True
        self.intended = intended
        self.request = request
        self.position = position
        self.headers_done = self.framed = False
        self.transport.write(raw)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.engine.fail(self, "protocol")

    def on_header(self, name: bytes, _value: bytes) -> None:
        if name.lower() in _FRAMING_HEADERS:
            self.framed = True

    def on_headers_complete(self) -> None:
        self.headers_done = True
        status = self.parser.get_status_code()
        if status in _BODILESS_STATUSES or status < 200:
            self.framed = True

    def on_message_complete(self) -> None:
        if self.busy:
            self.engine.answered(self, self.parser.should_keep_alive())

    def body(self) -> bytes:
        return b""

    def connection_lost(self, exc: Exception | None) -> None:
        self.engine.lost(self, exc)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _CheckedConnection(_Connection):
    """Keeps the response body for a caller's check or answer callback; httptools only
    calls `on_body` on protocols that have it, so other runs pay nothing for bodies."""

    def __init__(self, engine: _Engine) -> None:
        self.parts: list[bytes] = []
        super().__init__(engine)

    def send(self, raw: bytes, request: Request, position: int, intended: float) -> None:
        self.parts.clear()
        super().send(raw, request, position, intended)

    def on_body(self, data: bytes) -> None:
        self.parts.append(data)

    def body(self) -> bytes:
        return b"".join(self.parts)


class _Engine:
    """Connections, sends, answers, errors and timeouts shared by both modes."""

    def __init__(
        self,
        target: Target,
        requests: RequestSource,
        result: LoadResult,
        *,
        timeout: float,
        check: ResponseCheck | None,
        on_answer: AnswerCallback | None,
        series: bool,
        max_connections: int,
        max_requests: int | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("the request timeout must be positive")
        self.target = target
        self.result = result
        self.timeout = timeout
        self.check = check
        self.on_answer = on_answer
        self.max_connections = max_connections
        self.max_requests = max_requests
        self.loop = asyncio.get_running_loop()
        keeps_bodies = check is not None or on_answer is not None
        self.protocol = _CheckedConnection if keeps_bodies else _Connection
        if callable(requests):
            self.source: Callable[[int], Request] | None = requests
            self.templates: list[Request] = []
            self.encoded: list[bytes] = []
        else:
            if not requests:
                raise ValueError("at least one request template is needed")
            self.source = None
            self.templates = [Request(*template) for template in requests]
            self.encoded = [encode_request(t, target.authority) for t in self.templates]
        self.series: list[SecondStats] | None = [] if series else None
        # Open loop with several schedules: when each begins (perf_counter), to find the
        # phase of a request from its intended send time.
        self.phase_starts: list[float] = []
        self.closed_loop = result.mode == "closed"
        self.start = result.start = time.perf_counter()
        self.counter = 0
        self.in_flight = 0
        self.connecting = 0
        self.connections: set[_Connection] = set()
        self.idle: list[_Connection] = []
        self.pending: deque[float] = deque()
        self.sending = True
        self.limit_reached = asyncio.Event()
        self.drained = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.sweeper = self.loop.create_task(self._sweep())

    # Connections.

    @property
    def pool(self) -> int:
        return len(self.connections) + self.connecting

    def connect(self) -> None:
        self.connecting += 1
        task = self.loop.create_task(self._open())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _open(self) -> None:
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                _, connection = await self.loop.create_connection(
                    lambda: self.protocol(self), self.target.host, self.target.port
                )
        except ConnectionRefusedError:
            self._count_error("refused")
        except OSError:  # TimeoutError included
            self._count_error("connect")
        finally:
            self.connecting -= 1
        if connection is None:
            if self.closed_loop and self.sending:
                self.loop.call_later(RECONNECT_DELAY, self._reconnect)
            return
        self.connections.add(connection)
        self.result.connections = max(self.result.connections, len(self.connections))
        self.give_work(connection)

    def _reconnect(self) -> None:
        if self.sending:
            self.connect()

    def lost(self, connection: _Connection, exc: Exception | None) -> None:
        self.connections.discard(connection)
        if connection in self.idle:
            self.idle.remove(connection)
        failed = False
        if connection.busy:
            if exc is None and connection.headers_done and not connection.framed:
                # No length and no chunking: the close is what ends this body.
                self.answered(connection, keep_alive=False)
            else:
                failed = True
                self.fail(connection, "reset" if exc is not None else "closed")
        if not self.closed_loop:
            self.grow()
        elif self.sending:
            if failed:
                self.loop.call_later(RECONNECT_DELAY, self._reconnect)
            else:
                self.connect()

    def grow(self) -> None:
        """Open loop: connect for waiting requests while under the cap."""
        while self.connecting < len(self.pending) and self.pool < self.max_connections:
            self.connect()

    # Requests.

    def give_work(self, connection: _Connection) -> None:
        if self.closed_loop:
            if self.sending:
                self.send(connection, time.perf_counter())
            else:
                connection.close()
        elif self.pending:
            self.send(connection, self.pending.popleft())
        else:
            self.idle.append(connection)

    def send(self, connection: _Connection, intended: float) -> None:
        index = self.counter
        self.counter += 1
        if self.source is not None:
            position = index
            request = self.source(index)
            raw = encode_request(request, self.target.authority)
        else:
            position = index % len(self.encoded)
            request, raw = self.templates[position], self.encoded[position]
        if self.counter == self.max_requests:
            self.sending = False
            self.limit_reached.set()
        self.in_flight += 1
        self.result.sent += 1
        if self.series is not None:
            self._second(intended).sent += 1
        if self.phase_starts:
            self._phase(intended).sent += 1
        connection.send(raw, request, position, intended)

    def answered(self, connection: _Connection, keep_alive: bool) -> None:
        latency = time.perf_counter() - connection.intended
        connection.busy = False
        status = connection.parser.get_status_code()
        result = self.result
        result.latency.record(latency)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if self.series is not None:
            second = self._second(connection.intended)
            second.completed += 1
            second.latency.record(latency)
        if self.phase_starts:
            phase = self._phase(connection.intended)
            phase.statuses[status] = phase.statuses.get(status, 0) + 1
            phase.latency.record(latency)
        if self.check is not None and not self._passes(connection, status):
            self._count_error("invalid", connection.intended)
        if self.on_answer is not None:
            self.on_answer(connection.position, status, connection.body())
        self._done()
        if keep_alive:
            self.give_work(connection)
        else:
            connection.close()

    def _passes(self, connection: _Connection, status: int) -> bool:
        assert self.check is not None
        assert connection.request is not None
        try:
            return self.check(connection.request, status, connection.body())
        except Exception:
            # A check that cannot even read the answer has refused it.
            return False

    def fail(self, connection: _Connection, kind: str) -> None:
        if connection.busy:
            connection.busy = False
            self._count_error(kind, connection.intended)
            self._done()
        connection.abort()

    def _count_error(self, kind: str, intended: float | None = None) -> None:
        self.result.errors[kind] = self.result.errors.get(kind, 0) + 1
        moment = time.perf_counter() if intended is None else intended
        if self.series is not None:
            self._second(moment).errors += 1
        if self.phase_starts:
            self._phase(moment).errors += 1

    def _done(self) -> None:
        self.in_flight -= 1
        if not self.sending and not self.in_flight and not self.pending:
            self.drained.set()

    def _second(self, moment: float) -> SecondStats:
        assert self.series is not None
        # The epsilon keeps a send scheduled on a second's boundary from rounding into the
        # second before it.
        second = max(0, int(moment - self.start + 1e-9))
        while len(self.series) <= second:
            self.series.append(SecondStats(len(self.series)))
        return self.series[second]

    def _phase(self, moment: float) -> PhaseStats:
        index = max(0, bisect.bisect_right(self.phase_starts, moment) - 1)
        return self.result.phases[index]

    # Timeouts and the end of a run.

    async def _sweep(self) -> None:
        """Times out late answers and requests left waiting for a connection."""
        period = min(0.05, self.timeout / 4)
        while True:
            await asyncio.sleep(period)
            expired = time.perf_counter() - self.timeout
            for connection in [c for c in self.connections if c.busy and c.intended < expired]:
                self.fail(connection, "timeout")
            while self.pending and self.pending[0] < expired:
                self._count_error("timeout", self.pending.popleft())
            if not self.sending and not self.in_flight and not self.pending:
                self.drained.set()

    async def finish(self) -> None:
        """Stops sending, waits for the answers still due (each bounded by the timeout),
        then closes every connection."""
        self.sending = False
        if not self.in_flight and not self.pending:
            self.drained.set()
        try:
            async with asyncio.timeout(self.timeout + 1.0):
                await self.drained.wait()
        except TimeoutError:
            pass
        finally:
            self.sweeper.cancel()
            for task in list(self.tasks):
                task.cancel()
            for connection in list(self.connections):
                connection.abort()
            self.result.series = self.series


def _collector_frozen(
    run: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """`run` with the heap as it stands (the caller's data, the requests prepared) out of
    the garbage collector's reach: collections then walk only what the run itself makes,
    where a sender's pause counts as the server's latency (full collections of 56-91 ms were
    seen in a sender before). Nothing is collected first, which would take as long: cyclic
    garbage already there waits for the collections after the run."""

    @functools.wraps(run)
    async def frozen(*args: P.args, **kwargs: P.kwargs) -> T:
        gc.freeze()
        try:
            return await run(*args, **kwargs)
        finally:
            gc.unfreeze()

    return frozen


@_collector_frozen
async def run_closed_loop(
    target: Target,
    requests: RequestSource,
    *,
    connections: int = 64,
    duration: float = 5.0,
    max_requests: int | None = None,
    request_timeout: float = 5.0,
    check: ResponseCheck | None = None,
    series: bool = False,
) -> LoadResult:
    """`connections` connections each sending back to back for `duration` seconds (and no
    more than `max_requests` requests in all, if given)."""
    if connections < 1 or duration <= 0:
        raise ValueError("a closed loop needs at least one connection and a duration")
    result = LoadResult(mode="closed")
    engine = _Engine(
        target,
        requests,
        result,
        timeout=request_timeout,
        check=check,
        on_answer=None,
        series=series,
        max_connections=connections,
        max_requests=max_requests,
    )
    try:
        for _ in range(connections):
            engine.connect()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(engine.limit_reached.wait(), duration)
    finally:
        await engine.finish()
    result.duration = time.perf_counter() - engine.start
    return result


@_collector_frozen
async def run_open_loop(
    target: Target,
    requests: RequestSource,
    *,
    rate: float | Sequence[Schedule],
    duration: float | None = None,
    max_connections: int = 512,
    initial_connections: int = 8,
    request_timeout: float = 5.0,
    late_threshold: float = 0.001,
    check: ResponseCheck | None = None,
    on_answer: AnswerCallback | None = None,
    watch: Watcher | None = None,
    series: bool = False,
) -> LoadResult:
    """Requests at `rate` per second for `duration` seconds, or along a list of schedules
    (steps, ramps, recorded arrival times) one after the other.

    A send later than `late_threshold` counts in `late_sends`; a request that must wait
    because `max_connections` are all busy counts in `cap_waits`. Requests that never get
    a connection end as timeouts. `watch` runs from the first send to the last answer.
    With more than one schedule, `result.phases` reports each on its own.
    """
    if isinstance(rate, int | float):
        if duration is None:
            raise ValueError("a fixed rate needs a duration")
        steps: Sequence[Schedule] = [Step(float(rate), duration)]
    else:
        steps = rate
    if not steps or max_connections < 1:
        raise ValueError("an open loop needs at least one step and one connection")
    length = sum(step.duration for step in steps)
    result = LoadResult(mode="open", offered_rate=sum(s.requests for s in steps) / length)
    engine = _Engine(
        target,
        requests,
        result,
        timeout=request_timeout,
        check=check,
        on_answer=on_answer,
        series=series,
        max_connections=max_connections,
    )
    watcher: asyncio.Task[None] | None = None
    try:
        for _ in range(min(initial_connections, max_connections)):
            engine.connect()
        await asyncio.gather(*engine.tasks)
        # Series seconds count from the first scheduled send.
        start = engine.start = result.start = time.perf_counter() + 0.001
        if len(steps) > 1:
            _plan_phases(engine, start, steps)
        if watch is not None:
            watcher = asyncio.create_task(watch(result))
        await _send_on_schedule(engine, start, steps, late_threshold)
    finally:
        await engine.finish()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    result.duration = max(length, time.perf_counter() - engine.start)
    return result


def _plan_phases(engine: _Engine, start: float, steps: Sequence[Schedule]) -> None:
    offset = 0.0
    for index, step in enumerate(steps):
        # A ramp offers a changing rate; any other schedule its mean.
        begin = end = step.requests / step.duration
        if isinstance(step, Step):
            begin = step.rate
            end = step.rate if step.end_rate is None else step.end_rate
        engine.result.phases.append(
            PhaseStats(
                index,
                offset,
                step.duration,
                offered_start_rate=begin,
                offered_end_rate=end,
                scheduled=step.requests,
            )
        )
        engine.phase_starts.append(start + offset)
        offset += step.duration


async def _send_on_schedule(
    engine: _Engine, start: float, steps: Sequence[Schedule], late_threshold: float
) -> None:
    result = engine.result
    lateness = result.send_lateness
    clock = time.perf_counter
    step_start = start
    burst = 0
    for number, step in enumerate(steps):
        phase = result.phases[number] if result.phases else None
        for offset in step.offsets():
            intended = step_start + offset
            now = clock()
            if now < intended:
                burst = 0
                if intended - now > SPIN_WINDOW:
                    await asyncio.sleep(intended - now - SPIN_WINDOW)
                # Spinning on the loop keeps answers flowing while it waits (see SPIN_WINDOW).
                while clock() < intended:  # noqa: ASYNC110
                    await asyncio.sleep(0)
                now = clock()
            else:
                burst += 1
                if burst >= BURST:
                    burst = 0
                    await asyncio.sleep(0)
                    now = clock()
            late = now - intended
            lateness.record(late)
            if late > late_threshold:
                result.late_sends += 1
                if phase is not None:
                    phase.late_sends += 1
            if engine.idle:
                engine.send(engine.idle.pop(), intended)
                continue
            engine.pending.append(intended)
            engine.grow()
            if engine.connecting < len(engine.pending):
                result.cap_waits += 1
        step_start += step.duration


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs a load coroutine to completion, on uvloop when it is installed."""
    try:
        import uvloop  # optional: not built on every platform
    except ImportError:
        return asyncio.run(coroutine)
    outcome: T = uvloop.run(coroutine)
    return outcome
