"""What every benchmark scenario shares: servers started on loopback and pinned to a CPU,
the synthetic bid requests, closed-loop saturation runs and the result file.

The server under test is pinned to CPU 0 and the process running the load generator to
CPU 1, so that the two never compete for a core (on a machine with fewer than two CPUs
nothing is pinned, and the report says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import http.client
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools
import orjson

from bidder.traffic.histogram import Histogram
from bidder.traffic.loadgen import LoadResult, Request, Target, run, run_closed_loop
from bidder.traffic.synthetic import generate_bid_requests

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "loadtests" / "results"
SERVER_CPU = 0
LOADGEN_CPU = 1
HOST = "127.0.0.1"
BID_PATH = "/openrtb2/bid"
BID_HEADERS = {"content-type": "application/json", "x-openrtb-version": "2.6"}
SEED = 2026
STARTUP_TIMEOUT = 90.0
QUIET_BIDDER = {"BIDDER_LOG_LEVEL": "warning"}
_SHED = re.compile(r'^bidder_no_bids_total\{reason="overload"\} ([0-9.e+]+)$', re.MULTILINE)
_RECORDS_DROPPED = re.compile(
    r'^bidder_recorder_records_total\{outcome="dropped"\} ([0-9.e+]+)$', re.MULTILINE
)


@dataclass(frozen=True)
class Server:
    """How to start one server on a port and tell when it is ready."""

    command: Callable[[int], list[str]]
    ready_path: str = "/"
    # The bidder says 503 until its model is loaded; a baseline's any answer means ready.
    ready_status: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Environment that needs a resource living as long as the server (a temp directory).
    scoped_env: Callable[[contextlib.ExitStack], dict[str, str]] | None = None
    # For servers that write a stream to stdout; their stderr is still kept for errors.
    discard_stdout: bool = False
    # Another server it calls, started first on its own port.
    companion: Server | None = None
    companion_env: Callable[[int], dict[str, str]] | None = None
    cwd: Path = ROOT


class ParsingServerProtocol(asyncio.Protocol):
    """A raw asyncio server connection that feeds httptools' request parser, whose callbacks
    (`on_message_complete`, ...) subclasses define; a request it cannot parse closes the
    connection. The base of the load generator's own responders, far cheaper than any
    server they stand beside."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()


class ServerFailed(RuntimeError):
    pass


def bidder_command(port: int) -> list[str]:
    return [sys.executable, "-m", "bidder", "serve", "--port", str(port), "--workers", "1"]


def model_server_command(port: int) -> list[str]:
    return [
        *(sys.executable, "-m", "bidder", "model-server"),
        *("--host", HOST, "--port", str(port), "--workers", "1"),
    ]


BIDDER = Server(bidder_command, "/readyz", 200, QUIET_BIDDER)
MODEL_SERVER = Server(model_server_command, "/ping", 200, QUIET_BIDDER)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def can_pin() -> bool:
    return {SERVER_CPU, LOADGEN_CPU} <= os.sched_getaffinity(0)


def pinned_to(cpu: int) -> Callable[[], None]:
    return lambda: os.sched_setaffinity(0, {cpu})


# Linux's prctl option that has the kernel signal a process when its parent exits.
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _server_setup(pin: bool) -> Callable[[], None]:
    """What a server's process does before it starts: it is sent SIGTERM when the thread
    that started it exits, however it exits (a benchmark killed or interrupted leaves no
    server holding its CPU and port; the harness starts servers from the thread it runs
    in), and it is pinned to the server's CPU when `pin`."""
    harness = os.getpid()

    def setup() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != harness:  # the harness died before the line above
                os._exit(1)
        if pin:
            pinned_to(SERVER_CPU)()

    return setup


@contextlib.contextmanager
def load_generator_pinned() -> Iterator[bool]:
    """Pins this process to the load generator's CPU while the block runs; yields whether
    it could."""
    affinity = os.sched_getaffinity(0)
    pin = can_pin()
    if pin:
        pinned_to(LOADGEN_CPU)()
    try:
        yield pin
    finally:
        os.sched_setaffinity(0, affinity)


@contextlib.contextmanager
def started(
    name: str, server: Server, port: int, *, pin: bool
) -> Iterator[subprocess.Popen[bytes]]:
    """The server running on `port` and ready; terminated (then killed) on the way out."""
    with contextlib.ExitStack() as stack:
        env = {**os.environ, **server.env}
        if server.scoped_env is not None:
            env |= server.scoped_env(stack)
        if server.companion is not None:
            assert server.companion_env is not None
            companion_port = free_port()
            stack.enter_context(
                started(f"{name} companion", server.companion, companion_port, pin=pin)
            )
            env |= server.companion_env(companion_port)
        log = stack.enter_context(tempfile.TemporaryFile())
        process = subprocess.Popen(
            server.command(port),
            cwd=server.cwd,
            env=env,
            stdout=subprocess.DEVNULL if server.discard_stdout else log,
            stderr=log,
            preexec_fn=_server_setup(pin),
        )
        try:
            _wait_until_ready(name, server, port, process, log)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_ready(
    name: str, server: Server, port: int, process: subprocess.Popen[bytes], log: Any
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")[-3000:]
            raise ServerFailed(f"{name} exited with {process.returncode}:\n{output}")
        connection = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            connection.request("GET", server.ready_path)
            status = connection.getresponse().status
            if server.ready_status is None or status == server.ready_status:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    raise ServerFailed(f"{name} was not ready within {STARTUP_TIMEOUT:.0f} s")


def bid_requests(count: int) -> list[Request]:
    """`count` synthetic OpenRTB 2.6 bid requests (the same ones in every scenario)."""
    return [
        Request("POST", BID_PATH, BID_HEADERS, orjson.dumps(request))
        for request in generate_bid_requests(count, seed=SEED)
    ]


@dataclass(frozen=True)
class Saturation:
    """Closed-loop runs back to back; the median run's throughput is the saturation rate."""

    runs: list[LoadResult]

    @property
    def rate(self) -> float:
        return statistics.median(run.achieved_rate for run in self.runs)

    def status_rate(self, status: int) -> float:
        """Answers of one status per second, over all runs."""
        seconds = sum(run.duration for run in self.runs)
        answers = sum(run.statuses.get(status, 0) for run in self.runs)
        return answers / seconds if seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        latency = Histogram()
        for result in self.runs:
            latency.merge(result.latency)
        return {
            "saturation_rps": round(self.rate, 1),
            "saturation_runs_rps": [round(run.achieved_rate, 1) for run in self.runs],
            "saturation_statuses": merged(r.to_dict()["statuses"] for r in self.runs),
            "saturation_errors": merged(r.errors for r in self.runs),
            "saturation_latency_ms": latency.to_dict(),
        }


def saturate(
    target: Target,
    requests: list[Request],
    *,
    connections: int,
    duration: float,
    repeats: int,
    warmup: float,
) -> Saturation:
    """A warm-up run, not reported, then `repeats` closed-loop runs: one server taking
    turns alone."""
    return saturate_in_turns(
        {"": target},
        {"": requests},
        connections=connections,
        duration=duration,
        repeats=repeats,
        warmup=warmup,
    )[""]


def saturate_in_turns(
    targets: Mapping[str, Target],
    loads: Mapping[str, list[Request]],
    *,
    connections: int,
    duration: float,
    repeats: int,
    warmup: float,
) -> dict[str, Saturation]:
    """A warm-up run of each server, then `repeats` rounds of one closed-loop run per
    server, the order rotating from round to round: what else the machine does weighs on
    every server alike, and the runs of one round, a few seconds apart, compare fairly."""
    for name, target in targets.items():
        run(run_closed_loop(target, loads[name], connections=connections, duration=warmup))
    runs: dict[str, list[LoadResult]] = {name: [] for name in targets}
    for round_ in range(repeats):
        for name in rotated(list(targets), round_):
            runs[name].append(
                run(
                    run_closed_loop(
                        targets[name], loads[name], connections=connections, duration=duration
                    )
                )
            )
    return {name: Saturation(server_runs) for name, server_runs in runs.items()}


def rotated(names: list[str], by: int) -> list[str]:
    """`names` starting from the `by`-th (modulo their number)."""
    start = by % len(names) if names else 0
    return names[start:] + names[:start]


@dataclass(frozen=True)
class Tally:
    """What a bidder has counted so far of the work it did not do: requests shed with an
    overload no-bid, and records its recorder dropped with the queue full (0 for a server
    that does not say). A throughput figure is the bidder's only while both stay near 0."""

    shed: float = 0.0
    records_dropped: float = 0.0

    def __sub__(self, before: Tally) -> Tally:
        return Tally(self.shed - before.shed, self.records_dropped - before.records_dropped)

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.shed + other.shed, self.records_dropped + other.records_dropped)


def tally_so_far(port: int) -> Tally:
    """The `Tally` of the server on `port`, read off its /metrics."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    shed = _SHED.search(text)
    dropped = _RECORDS_DROPPED.search(text)
    return Tally(float(shed.group(1)) if shed else 0.0, float(dropped.group(1)) if dropped else 0.0)


def merged(tables: Iterable[Mapping[Any, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for table in tables:
        for key, count in table.items():
            total[str(key)] = total.get(str(key), 0) + count
    return dict(sorted(total.items()))


def machine(pinned: bool) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "pinned": pinned,
        "python": sys.version.split()[0],
        "platform": sys.platform,
    }


def write_report(report: Mapping[str, Any], out: Path | None, scenario: str) -> Path:
    """Writes the JSON report (by default a new file in `loadtests/results/`)."""
    path = out or RESULTS / f"{scenario}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return path
