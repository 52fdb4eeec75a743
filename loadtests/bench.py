"""The bid-path benchmark: the bidder, its baselines and the load generator's own ceiling,
side by side in one run.

    python -m loadtests.bench [--duration 5] [--repeats 3] [--connections 64]
                              [--servers loadgen-ceiling,ceiling,fastapi-embedded,bidder]
                              [--quick] [--plot latency.png] [--out result.json]

Every server is started as a subprocess on a free 127.0.0.1 port, pinned to CPU 0; this
process, which runs the load generator, pins itself to CPU 1, so that server and generator
never compete for a core (on a machine with fewer than two CPUs nothing is pinned). Each
server gets the same synthetic OpenRTB 2.6 requests. For each one: a short warm-up,
`--repeats` closed-loop saturation runs (the median is its throughput), then an open-loop
run at half of that rate for p50/p99 latency; with `--plot`, open-loop runs at fractions
of its saturation draw latency against offered load. Results are printed as a markdown
table and written as JSON to `loadtests/results/`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
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
from bidder.traffic.loadgen import (
    LoadResult,
    Request,
    Target,
    run,
    run_closed_loop,
    run_open_loop,
)
from bidder.traffic.synthetic import generate_bid_requests

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "loadtests" / "results"
SERVER_CPU = 0
LOADGEN_CPU = 1
HOST = "127.0.0.1"
BID_PATH = "/openrtb2/bid"
BID_HEADERS = {"content-type": "application/json", "x-openrtb-version": "2.6"}
SEED = 2026
SWEEP_FRACTIONS = (0.1, 0.25, 0.5, 0.7, 0.85, 1.0)
QUICK_SWEEP_FRACTIONS = (0.25, 0.5, 1.0)
STARTUP_TIMEOUT = 90.0
DEFAULT_SERVERS = "loadgen-ceiling,ceiling,fastapi-embedded,bidder"
# Older result files and docs call the FastAPI baseline `baseline`.
ALIASES = {"baseline": "fastapi-embedded"}
RATIOS = {
    "bidder/fastapi-embedded": ("bidder", "fastapi-embedded"),
    "bidder/ceiling": ("bidder", "ceiling"),
    "bidder-sagemaker/fastapi-embedded": ("bidder-sagemaker", "fastapi-embedded"),
    "ceiling/loadgen-ceiling": ("ceiling", "loadgen-ceiling"),
}

UVICORN = (
    *(sys.executable, "-m", "uvicorn", "--host", HOST, "--http", "httptools"),
    *("--loop", "uvloop", "--workers", "1", "--no-access-log", "--log-level", "warning"),
)


@dataclass(frozen=True)
class Server:
    """How to start one server on a port and tell when it is ready."""

    command: Callable[[int], list[str]]
    ready_path: str = "/"
    # The bidder says 503 until its model is loaded; a baseline's any answer means ready.
    ready_status: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Another server it calls, started first on its own port.
    companion: Server | None = None
    companion_env: Callable[[int], dict[str, str]] | None = None


def _uvicorn(app: str) -> Callable[[int], list[str]]:
    return lambda port: [*UVICORN, app, "--port", str(port)]


def _bidder(port: int) -> list[str]:
    return [sys.executable, "-m", "bidder", "serve", "--port", str(port)]


QUIET_BIDDER = {"BIDDER_LOG_LEVEL": "warning"}
MODEL_SERVER = Server(
    lambda port: [
        *(sys.executable, "-m", "bidder", "model-server"),
        *("--host", HOST, "--port", str(port)),
    ],
    ready_path="/ping",
    ready_status=200,
    env=QUIET_BIDDER,
)
SERVERS: dict[str, Server] = {
    "loadgen-ceiling": Server(
        lambda port: [sys.executable, "-m", "loadtests.bench", "--serve-fixed", str(port)]
    ),
    "ceiling": Server(_uvicorn("loadtests.baselines.ceiling:app")),
    "fastapi-embedded": Server(_uvicorn("loadtests.baselines.fastapi_embedded:app")),
    "bidder": Server(_bidder, "/readyz", 200, QUIET_BIDDER),
    "bidder-sagemaker": Server(
        _bidder,
        "/readyz",
        200,
        {
            **QUIET_BIDDER,
            "BIDDER_SCORER": "sagemaker",
            "BIDDER_SAGEMAKER_ENDPOINT_NAME": "bench",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
        companion=MODEL_SERVER,
        companion_env=lambda port: {"BIDDER_SAGEMAKER_ENDPOINT_URL": f"http://{HOST}:{port}"},
    ),
}


class ServerFailed(RuntimeError):
    pass


# --- the load generator's own ceiling ---

FIXED_204 = b"HTTP/1.1 204 No Content\r\n\r\n"


class _FixedResponder(asyncio.Protocol):
    """Answers every request with a canned 204: far cheaper per request than any server
    measured, so what the generator reaches against it is the generator's own limit."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        self.transport.write(FIXED_204)


def serve_fixed(port: int) -> None:
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_FixedResponder, HOST, port, backlog=1024)
        await server.serve_forever()

    run(serve())


# --- starting servers ---


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def can_pin() -> bool:
    allowed = os.sched_getaffinity(0)
    return {SERVER_CPU, LOADGEN_CPU} <= allowed


def _pinned_to(cpu: int) -> Callable[[], None]:
    return lambda: os.sched_setaffinity(0, {cpu})


@contextlib.contextmanager
def started(name: str, server: Server, port: int, *, pin: bool) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        env = {**os.environ, **server.env}
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
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_pinned_to(SERVER_CPU) if pin else None,
        )
        try:
            _wait_until_ready(name, server, port, process, log)
            yield
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


# --- measuring ---


@dataclass(frozen=True)
class Plan:
    duration: float
    repeats: int
    connections: int
    warmup: float
    sweep: tuple[float, ...]


def measure(name: str, port: int, requests: list[Request], plan: Plan) -> dict[str, Any]:
    target = Target(HOST, port)
    run(run_closed_loop(target, requests, connections=plan.connections, duration=plan.warmup))
    saturations = [
        run(run_closed_loop(target, requests, connections=plan.connections, duration=plan.duration))
        for _ in range(plan.repeats)
    ]
    rates = [result.achieved_rate for result in saturations]
    saturation = statistics.median(rates)
    latency = Histogram()
    for result in saturations:
        latency.merge(result.latency)
    entry: dict[str, Any] = {
        "server": name,
        "saturation_rps": round(saturation, 1),
        "saturation_runs_rps": [round(rate, 1) for rate in rates],
        "saturation_statuses": _merged(r.to_dict()["statuses"] for r in saturations),
        "saturation_errors": _merged(r.errors for r in saturations),
        "saturation_latency_ms": latency.to_dict(),
        "half_load": None,
    }
    if saturation <= 0:
        return entry
    entry["half_load"] = _open(target, requests, saturation / 2, plan.duration).to_dict()
    if plan.sweep:
        sweep_duration = max(1.0, plan.duration)
        entry["sweep"] = [
            _open(target, requests, saturation * fraction, sweep_duration).to_dict()
            | {"fraction": fraction}
            for fraction in plan.sweep
        ]
    return entry


def _open(target: Target, requests: list[Request], rate: float, duration: float) -> LoadResult:
    return run(run_open_loop(target, requests, rate=rate, duration=duration))


def _merged(tables: Iterable[Mapping[Any, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for table in tables:
        for key, count in table.items():
            merged[str(key)] = merged.get(str(key), 0) + count
    return dict(sorted(merged.items()))


def bid_requests(count: int) -> list[Request]:
    return [
        Request("POST", BID_PATH, BID_HEADERS, orjson.dumps(request))
        for request in generate_bid_requests(count, seed=SEED)
    ]


def ratios(results: list[dict[str, Any]]) -> dict[str, float]:
    rate = {r["server"]: r.get("saturation_rps", 0.0) for r in results}
    return {
        label: round(rate[a] / rate[b], 3)
        for label, (a, b) in RATIOS.items()
        if rate.get(a) and rate.get(b)
    }


# --- reporting ---


def markdown(results: list[dict[str, Any]], ratio_table: dict[str, float]) -> str:
    lines = [
        "| server | saturation req/s (median) | runs | p50 ms @ ½ | p99 ms @ ½ | p99.9 ms @ ½ "
        "| statuses | errors |",
        "|---|---:|---|---:|---:|---:|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['server']} | failed: {r['error'].splitlines()[0]} |||||||")
            continue
        half = (r["half_load"] or {}).get("latency_ms", {})
        errors = _merged([r["saturation_errors"], (r["half_load"] or {}).get("errors", {})])
        lines.append(
            f"| {r['server']} | {r['saturation_rps']:,.0f} | "
            f"{' / '.join(f'{rate:,.0f}' for rate in r['saturation_runs_rps'])} | "
            f"{_ms(half.get('p50'))} | {_ms(half.get('p99'))} | {_ms(half.get('p99.9'))} | "
            f"{r['saturation_statuses']} | {errors or '-'} |"
        )
    lines.append("")
    lines.extend(f"- {label}: **{value:.2f}×**" for label, value in ratio_table.items())
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def plot(results: list[dict[str, Any]], path: Path) -> bool:
    """Latency against offered load; False if matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axis = plt.subplots(figsize=(9, 5.5))
    for r in results:
        sweep = r.get("sweep") or []
        if not sweep:
            continue
        rates = [point["offered_rate"] for point in sweep]
        (line,) = axis.plot(
            rates,
            [point["latency_ms"]["p99"] for point in sweep],
            marker="o",
            label=f"{r['server']} p99",
        )
        axis.plot(
            rates,
            [point["latency_ms"]["p50"] for point in sweep],
            marker=".",
            linestyle="--",
            color=line.get_color(),
            label=f"{r['server']} p50",
        )
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("offered load, open loop (requests/s)")
    axis.set_ylabel("latency from intended send time (ms)")
    axis.set_title("Latency against offered load (server on CPU 0, load generator on CPU 1)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


# --- the command ---


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--repeats", type=int, default=3, help="saturation runs per server")
    parser.add_argument("--connections", type=int, default=64, help="closed-loop connections")
    parser.add_argument(
        "--servers",
        default=DEFAULT_SERVERS,
        help=f"comma-separated, among {', '.join(SERVERS)} (default {DEFAULT_SERVERS})",
    )
    parser.add_argument("--requests", type=int, default=2000, help="distinct bid requests")
    parser.add_argument("--quick", action="store_true", help="short settings for a smoke run")
    parser.add_argument("--plot", type=Path, help="draw latency against offered load (PNG)")
    parser.add_argument("--out", type=Path, help="result JSON (default: loadtests/results/)")
    parser.add_argument("--serve-fixed", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.serve_fixed is not None:
        serve_fixed(args.serve_fixed)
        return 0
    names = [ALIASES.get(n.strip(), n.strip()) for n in args.servers.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SERVERS))
    if unknown:
        parser.error(f"unknown servers {unknown}; known: {', '.join(SERVERS)}")
    if args.quick:
        args.duration, args.repeats, args.requests = 0.5, 1, 200
    plan = Plan(
        duration=args.duration,
        repeats=args.repeats,
        connections=args.connections,
        warmup=0.2 if args.quick else 1.0,
        sweep=() if args.plot is None else QUICK_SWEEP_FRACTIONS if args.quick else SWEEP_FRACTIONS,
    )
    requests = bid_requests(args.requests)
    affinity = os.sched_getaffinity(0)
    pin = can_pin()
    if pin:
        _pinned_to(LOADGEN_CPU)()
    results: list[dict[str, Any]] = []
    try:
        for name in names:
            port = free_port()
            try:
                with started(name, SERVERS[name], port, pin=pin):
                    results.append(measure(name, port, requests, plan))
            except ServerFailed as exc:
                results.append({"server": name, "error": str(exc)})
                print(f"{name}: {exc}", file=sys.stderr)
                continue
            print(f"{name:18s} {results[-1]['saturation_rps']:>10,.0f} req/s", file=sys.stderr)
    finally:
        os.sched_setaffinity(0, affinity)
    ratio_table = ratios([r for r in results if "error" not in r])
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "pinned": pin,
            "python": sys.version.split()[0],
            "platform": sys.platform,
        },
        "settings": {
            "duration_s": plan.duration,
            "repeats": plan.repeats,
            "connections": plan.connections,
            "distinct_requests": args.requests,
            "seed": SEED,
            "quick": args.quick,
            "sweep_fractions": list(plan.sweep),
        },
        "results": results,
        "ratios": ratio_table,
    }
    out = args.out or RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(markdown(results, ratio_table))
    print(f"\nwritten to {out}")
    if args.plot is not None:
        drawn = plot(results, args.plot)
        print(f"plot: {args.plot}" if drawn else "plot skipped: matplotlib is not installed")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
