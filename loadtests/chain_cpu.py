"""CPU time per request of each process of a server chain, under closed-loop load.

    python -m loadtests.chain_cpu [--servers fastapi-sagemaker,bidder-sagemaker]
                                  [--duration 4] [--repeats 3] [--connections 64]

On a 2-core machine shared with other work, the servers of `loadtests/bench.py` get only
what the rest of the machine leaves of CPU 0, and their throughput says as much about that
as about them. The CPU time each of their processes spends per answered request does not
depend on how much of the core they got: this measures it, for the server and for its
companion (the model server of the SageMaker entries), from the run time of their threads
in `/proc/<pid>/task/*/schedstat` before and after each closed-loop run. The sum is what
one request costs the chain, and its inverse the throughput of the chain on a core of its
own. The ratios of `bench.py` follow, from those costs (the median run of each server).
"""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bidder.traffic.loadgen import Request, Target, run, run_closed_loop
from loadtests.bench import RATIOS, SERVERS
from loadtests.harness import (
    HOST,
    bid_requests,
    free_port,
    load_generator_pinned,
    machine,
    started,
    write_report,
)


def cpu_seconds(pid: int) -> float:
    """CPU time of a process's threads so far, to the nanosecond (`/proc/<pid>/stat` counts
    in 10 ms ticks, too coarse for a model server's share of a short run)."""
    total = 0
    for thread in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((thread / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended meanwhile
    return total / 1e9


def children() -> list[int]:
    """This process's child processes: the server under test and its companion."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if parent == os.getpid():
            found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class ChainRun:
    rate: float
    # Microseconds of CPU per answered request: the server, then its companion if any.
    server_us: float
    companion_us: float | None

    @property
    def total_us(self) -> float:
        return self.server_us + (self.companion_us or 0.0)


def measure(
    name: str, requests: list[Request], args: argparse.Namespace, pin: bool
) -> list[ChainRun]:
    port = free_port()
    # This process may have other children (a test runner's servers): not the companion.
    others = set(children())
    with started(name, SERVERS[name], port, pin=pin) as server:
        companion = next(iter(set(children()) - others - {server.pid}), None)
        target = Target(HOST, port)
        run(run_closed_loop(target, requests, connections=args.connections, duration=1.0))
        runs = []
        for _ in range(args.repeats):
            pids = [server.pid] if companion is None else [server.pid, companion]
            before = [cpu_seconds(pid) for pid in pids]
            load = run(
                run_closed_loop(
                    target, requests, connections=args.connections, duration=args.duration
                )
            )
            spent = [cpu_seconds(pid) - start for pid, start in zip(pids, before, strict=True)]
            per_request = [seconds / max(load.completed, 1) * 1e6 for seconds in spent]
            runs.append(
                ChainRun(
                    load.achieved_rate,
                    per_request[0],
                    per_request[1] if companion is not None else None,
                )
            )
    return runs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.chain_cpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--servers", default="fastapi-sagemaker,bidder-sagemaker")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per server")
    parser.add_argument("--connections", type=int, default=64, help="closed-loop connections")
    parser.add_argument("--out", type=Path, help="result JSON (default: loadtests/results/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SERVERS))
    if unknown:
        parser.error(f"unknown servers {unknown}; known: {', '.join(SERVERS)}")
    if args.repeats < 1 or args.duration <= 0:
        parser.error("--repeats must be at least 1 and --duration above 0")
    requests = bid_requests(2000)
    results: dict[str, dict[str, Any]] = {}
    print(
        "| server | req/s achieved | server µs/request | companion µs/request | chain µs/request |"
    )
    print("|---|---:|---:|---:|---:|")
    with load_generator_pinned() as pin:
        for name in names:
            runs = measure(name, requests, args, pin)
            median = sorted(runs, key=lambda chain: chain.total_us)[len(runs) // 2]
            results[name] = {
                "runs": [vars(chain) | {"total_us": chain.total_us} for chain in runs],
                "median_total_us": round(median.total_us, 1),
                "achieved_rps": round(statistics.median(chain.rate for chain in runs), 1),
            }
            companion = "-" if median.companion_us is None else f"{median.companion_us:.1f}"
            print(
                f"| {name} | {results[name]['achieved_rps']:,.0f} | {median.server_us:.1f} | "
                f"{companion} | {median.total_us:.1f} |"
            )
    ratios = {
        label: round(
            results[ratio.reference]["median_total_us"] / results[ratio.server]["median_total_us"],
            2,
        )
        for label, ratio in RATIOS.items()
        if ratio.server in results and ratio.reference in results
    }
    for label, value in ratios.items():
        target = RATIOS[label].target
        print(
            f"- {label}, from CPU per request: **{value:.2f}×**"
            + ("" if target is None else f" (target ≥ {target:g}×)")
        )
    report = {
        "machine": machine(pin),
        "settings": vars(args) | {"out": None},
        "results": results,
        "ratios": ratios,
    }
    print(f"\nwritten to {write_report(report, args.out, 'chain-cpu')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
