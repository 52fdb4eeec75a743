"""The bid-path benchmark: the bidder and its baselines, side by side in one run.

    python -m loadtests.bench [--duration 8] [--repeats 3] [--servers ceiling,baseline,bidder]
                              [--connections 32] [--quick] [--plot latency.png]

Each server is started on a free loopback port and pinned to CPU 0; the load generator runs
in this process, pinned to CPU 1, so the two never compete for a core. Every server gets
the same synthetic OpenRTB requests. For each: closed-loop saturation runs (median of
`--repeats`), then an open-loop run at half of its own saturation rate for p50/p99. The
load generator's own ceiling is measured against a server that answers without reading
the request. Results are printed as a table and written to `loadtests/results/`.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from bidder.traffic.loadgen import Target, encode_requests, run, run_closed_loop, run_open_loop
from bidder.traffic.synthetic import generate_bid_requests

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "loadtests" / "results"
SERVER_CPU = 0
LOADGEN_CPU = 1
UVICORN = [
    sys.executable,
    "-m",
    "uvicorn",
    "--http",
    "httptools",
    "--loop",
    "uvloop",
    "--no-access-log",
    "--log-level",
    "warning",
]


@dataclass(frozen=True)
class Server:
    name: str
    command: list[str]
    ready_path: str
    env: dict[str, str]


def servers(port_of: dict[str, int], model_server_port: int) -> dict[str, Server]:
    def uvicorn(app: str, name: str) -> list[str]:
        return [*UVICORN, app, "--port", str(port_of[name])]

    bidder_env = {"BIDDER_LOG_LEVEL": "warning"}
    return {
        "loadgen-ceiling": Server(
            "loadgen-ceiling", uvicorn("loadtests.baselines.fixed:app", "loadgen-ceiling"), "/", {}
        ),
        "ceiling": Server(
            "ceiling", uvicorn("loadtests.baselines.ceiling:app", "ceiling"), "/", {}
        ),
        "baseline": Server(
            "baseline",
            uvicorn("loadtests.baselines.fastapi_embedded:app", "baseline"),
            "/readyz",
            {},
        ),
        "bidder": Server(
            "bidder",
            [sys.executable, "-m", "bidder", "serve", "--port", str(port_of["bidder"])],
            "/readyz",
            bidder_env,
        ),
        "bidder-sagemaker": Server(
            "bidder-sagemaker",
            [sys.executable, "-m", "bidder", "serve", "--port", str(port_of["bidder-sagemaker"])],
            "/readyz",
            {
                **bidder_env,
                "BIDDER_SCORER": "sagemaker",
                "BIDDER_SAGEMAKER_ENDPOINT_NAME": "bench",
                "BIDDER_SAGEMAKER_ENDPOINT_URL": f"http://127.0.0.1:{model_server_port}",
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1",
            },
        ),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def started(server: Server, port: int, cpu: int = SERVER_CPU) -> Iterator[None]:
    env = {**os.environ, **server.env}
    process = subprocess.Popen(
        server.command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{server.name} exited: {process.stderr.read().decode()[-2000:]}"
                )  # type: ignore[union-attr]
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{port}{server.ready_path}", timeout=1).status_code
                    < 500
                ):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.name} did not start")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def measure(name: str, port: int, bodies: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    target = Target("127.0.0.1", port)
    requests = encode_requests(target, bodies, {"x-openrtb-version": "2.6"})
    run(run_closed_loop(target, requests, connections=args.connections, duration=1.0))  # warm-up
    saturations = [
        run(run_closed_loop(target, requests, connections=args.connections, duration=args.duration))
        for _ in range(args.repeats)
    ]
    throughput = statistics.median(r.throughput for r in saturations)
    half = run(run_open_loop(target, requests, rate=throughput / 2, duration=args.duration))
    result: dict[str, Any] = {
        "server": name,
        "saturation_rps": round(throughput, 1),
        "saturation_runs_rps": [round(r.throughput, 1) for r in saturations],
        "saturation_statuses": saturations[-1].summary()["status_counts"],
        "half_load": half.summary(),
    }
    if args.plot:
        result["sweep"] = [
            run(
                run_open_loop(target, requests, rate=throughput * f, duration=args.duration / 2)
            ).summary()
            for f in (0.2, 0.4, 0.6, 0.8, 0.9, 1.0)
        ]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--servers", default="loadgen-ceiling,ceiling,baseline,bidder")
    parser.add_argument("--requests", type=int, default=2000, help="distinct synthetic requests")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--plot", type=Path, help="latency against offered load, as PNG")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.repeats, args.requests = 1.0, 1, 200
    os.sched_setaffinity(0, {LOADGEN_CPU})
    bodies = [orjson.dumps(r) for r in generate_bid_requests(args.requests, seed=2026)]
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    known = ("loadgen-ceiling", "ceiling", "baseline", "bidder", "bidder-sagemaker")
    unknown = set(names) - set(known)
    if unknown:
        parser.error(f"unknown servers {sorted(unknown)}; known: {', '.join(known)}")
    ports = {name: free_port() for name in known}
    model_server_port = free_port()
    table = servers(ports, model_server_port)
    results: list[dict[str, Any]] = []
    for name in names:
        server = table[name]
        if name == "bidder-sagemaker":
            model_server = Server(
                "model-server",
                [
                    sys.executable,
                    "-m",
                    "bidder",
                    "model-server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(model_server_port),
                ],
                "/ping",
                {"BIDDER_LOG_LEVEL": "warning"},
            )
            with (
                started(model_server, model_server_port, cpu=SERVER_CPU),
                started(server, ports[name]),
            ):
                results.append(measure(name, ports[name], bodies, args))
        else:
            with started(server, ports[name]):
                results.append(measure(name, ports[name], bodies, args))
        print(f"{name:18s} {results[-1]['saturation_rps']:>9.0f} req/s", file=sys.stderr)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": sys.platform,
        },
        "settings": {k: str(v) for k, v in vars(args).items()},
        "results": results,
        "ratios": ratios(results),
    }
    out = args.out or RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(markdown(results, report["ratios"]))
    print(f"\nwritten to {out}")
    if args.plot:
        plot(results, args.plot)
    return 0


def ratios(results: list[dict[str, Any]]) -> dict[str, float]:
    by_name = {r["server"]: r["saturation_rps"] for r in results}
    pairs = {
        "bidder/baseline": ("bidder", "baseline"),
        "bidder/ceiling": ("bidder", "ceiling"),
        "ceiling/loadgen-ceiling": ("ceiling", "loadgen-ceiling"),
        "bidder-sagemaker/baseline": ("bidder-sagemaker", "baseline"),
    }
    return {
        label: round(by_name[a] / by_name[b], 3)
        for label, (a, b) in pairs.items()
        if a in by_name and b in by_name and by_name[b]
    }


def markdown(results: list[dict[str, Any]], ratio_table: dict[str, float]) -> str:
    lines = [
        "| server | saturation req/s (median) | runs | p50 ms @ half | p99 ms @ half | statuses |",
        "|---|---:|---|---:|---:|---|",
    ]
    for r in results:
        half = r["half_load"]["latency_ms"]
        lines.append(
            f"| {r['server']} | {r['saturation_rps']:.0f} | {r['saturation_runs_rps']} | "
            f"{half['p50']:.2f} | {half['p99']:.2f} | {r['saturation_statuses']} |"
        )
    lines.append("")
    lines.extend(f"- {label}: **{value:.2f}×**" for label, value in ratio_table.items())
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    for r in results:
        sweep = r.get("sweep", [])
        rates = [s["offered_rate"] for s in sweep]
        axis.plot(
            rates, [s["latency_ms"]["p99"] for s in sweep], marker="o", label=f"{r['server']} p99"
        )
        axis.plot(
            rates,
            [s["latency_ms"]["p50"] for s in sweep],
            linestyle="--",
            label=f"{r['server']} p50",
        )
    axis.set_xlabel("offered load (req/s)")
    axis.set_ylabel("latency (ms)")
    axis.set_yscale("log")
    axis.legend()
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
