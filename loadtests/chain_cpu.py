"""CPU time per request of each process of a server chain, and of the server's threads,
under closed-loop load.

    python -m loadtests.chain_cpu [--servers fastapi-sagemaker,bidder-sagemaker]
                                  [--duration 4] [--repeats 3] [--connections 64]
                                  [--variant NAME=BASE:KEY=VALUE[,KEY=VALUE...]]

On a 2-core machine shared with other work, the servers of `loadtests/bench.py` get only
what the rest of the machine leaves of CPU 0, and their throughput says as much about that
as about them. The CPU time each of their processes spends per answered request does not
depend on how much of the core they got: this measures it, for the server and for its
companion (the model server of the SageMaker entries), from the run time of their threads
in `/proc/<pid>/task/*/schedstat` before and after each closed-loop run. The sum is what
one request costs the chain, and its inverse the throughput of the chain on a core of its
own. The ratios of `bench.py` follow, from those costs (the median run of each server).

The server's CPU is split between its event loop's thread (the process's first) and its
other threads (the traffic recorder's writer, for one), with the times a second the kernel
took the core from the loop's thread while it could run (its involuntary context
switches): what another thread's work costs the loop shows there, beside that work's own
CPU. Every server is started first and the runs taken in turns, the order rotating from
round to round, so that what else the machine does weighs on all alike; `--variant` adds a
server as `bench.py`'s does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bidder.traffic.loadgen import Request, Target, run, run_closed_loop
from loadtests.bench import selected
from loadtests.harness import (
    HOST,
    Server,
    bid_requests,
    free_port,
    load_generator_pinned,
    machine,
    rotated,
    started,
    write_report,
)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time so far of a process's first thread (an event loop's, in a server) and of
    its other threads, to the nanosecond (`/proc/<pid>/stat` counts in 10 ms ticks, too
    coarse for a model server's share of a short run)."""
    first = others = 0
    for thread in Path(f"/proc/{pid}/task").iterdir():
        try:
            spent = int((thread / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended meanwhile
        if thread.name == str(pid):
            first = spent
        else:
            others += spent
    return first / 1e9, others / 1e9


def preemptions(pid: int) -> int:
    """Times so far the kernel switched a process's first thread out while it could run."""
    for line in Path(f"/proc/{pid}/task/{pid}/status").read_text().splitlines():
        if line.startswith("nonvoluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


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
    # Microseconds of CPU per answered request: the server's event loop's thread, its other
    # threads, then its companion if any.
    loop_us: float
    threads_us: float
    companion_us: float | None
    # Times a second the loop's thread was switched out while it could run.
    loop_preemptions_per_s: float

    @property
    def server_us(self) -> float:
        return self.loop_us + self.threads_us

    @property
    def total_us(self) -> float:
        return self.server_us + (self.companion_us or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return vars(self) | {"server_us": self.server_us, "total_us": self.total_us}


@dataclass(frozen=True)
class Running:
    """A server started for the measurement, and its companion's process if it has one."""

    target: Target
    pid: int
    companion: int | None


def start_all(
    servers: dict[str, Server], stack: contextlib.ExitStack, pin: bool
) -> dict[str, Running]:
    """Every server started and ready, stopped when `stack` closes."""
    running = {}
    # This process may have other children (a test runner's servers): not companions.
    known = set(children())
    for name, server in servers.items():
        port = free_port()
        process = stack.enter_context(started(name, server, port, pin=pin))
        new = set(children()) - known - {process.pid}
        known |= new | {process.pid}
        running[name] = Running(Target(HOST, port), process.pid, next(iter(new), None))
    return running


def one_run(server: Running, requests: list[Request], args: argparse.Namespace) -> ChainRun:
    loop_before, threads_before = cpu_seconds(server.pid)
    companion_before = cpu_seconds(server.companion) if server.companion else (0.0, 0.0)
    preempted_before = preemptions(server.pid)
    load = run(
        run_closed_loop(
            server.target, requests, connections=args.connections, duration=args.duration
        )
    )
    loop_after, threads_after = cpu_seconds(server.pid)
    answered = max(load.completed, 1)
    companion_us = None
    if server.companion:
        companion_seconds = sum(cpu_seconds(server.companion)) - sum(companion_before)
        companion_us = companion_seconds / answered * 1e6
    return ChainRun(
        load.achieved_rate,
        (loop_after - loop_before) / answered * 1e6,
        (threads_after - threads_before) / answered * 1e6,
        companion_us,
        (preemptions(server.pid) - preempted_before) / load.duration,
    )


def measure_in_turns(
    servers: dict[str, Server], requests: list[Request], args: argparse.Namespace, pin: bool
) -> dict[str, list[ChainRun]]:
    """A warm-up run of each server, then `args.repeats` rounds of one run each."""
    with contextlib.ExitStack() as stack:
        running = start_all(servers, stack, pin)
        for server in running.values():
            run(
                run_closed_loop(server.target, requests, connections=args.connections, duration=1.0)
            )
        runs: dict[str, list[ChainRun]] = {name: [] for name in running}
        for round_ in range(args.repeats):
            for name in rotated(list(running), round_):
                runs[name].append(one_run(running[name], requests, args))
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
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=BASE:KEY=VALUE[,KEY=VALUE...]",
        help="also measure server BASE started with these environment variables, as NAME "
        "(as bench.py's --variant); repeatable",
    )
    parser.add_argument("--out", type=Path, help="result JSON (default: loadtests/results/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    lineup, names = selected(parser, args.servers, args.variant)
    if args.repeats < 1 or args.duration <= 0:
        parser.error("--repeats must be at least 1 and --duration above 0")
    requests = bid_requests(2000)
    with load_generator_pinned() as pin:
        runs = measure_in_turns({name: lineup.servers[name] for name in names}, requests, args, pin)
    results: dict[str, dict[str, Any]] = {}
    print(
        "| server | req/s achieved | event loop µs/request | other threads µs/request "
        "| loop preempted /s | companion µs/request | chain µs/request |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, server_runs in runs.items():
        median = sorted(server_runs, key=lambda chain: chain.total_us)[len(server_runs) // 2]
        results[name] = {
            "runs": [chain.to_dict() for chain in server_runs],
            "median_total_us": round(median.total_us, 2),
            "achieved_rps": round(statistics.median(chain.rate for chain in server_runs), 1),
        }
        companion = "-" if median.companion_us is None else f"{median.companion_us:.2f}"
        print(
            f"| {name} | {results[name]['achieved_rps']:,.0f} | {median.loop_us:.2f} | "
            f"{median.threads_us:.2f} | {median.loop_preemptions_per_s:,.0f} | {companion} | "
            f"{median.total_us:.2f} |"
        )
    ratios = {
        label: round(
            results[ratio.reference]["median_total_us"] / results[ratio.server]["median_total_us"],
            3,
        )
        for label, ratio in lineup.ratios.items()
        if ratio.server in results and ratio.reference in results
    }
    for label, value in ratios.items():
        target = lineup.ratios[label].target
        print(
            f"- {label}, from CPU per request: **{value:.3f}×**"
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
