"""Memory soak: the bidder under sustained closed-loop load, its RSS sampled every second.

    python -m loadtests.soak [--duration 300] [--warmup 60] [--window 30]
                             [--connections 64] [--quick] [--out result.json]

`bidder serve` (one worker, pinned to CPU 0 as in the benchmark) gets the benchmark's
synthetic bid requests back to back on `--connections` connections for `--duration`
seconds. Reported: the worker's peak RSS (the kernel's high-water mark, target ≤ 200 MB),
the growth of its RSS over the soak after `--warmup` seconds (median of the first
`--window` seconds after the warm-up against the median of the last `--window` seconds,
target ≤ 5 %: medians, so that one collection cycle does not decide), and the throughput.
Exits 1 when a memory target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bidder.traffic.loadgen import LoadResult, Request, Target, run, run_closed_loop
from loadtests.harness import (
    BIDDER,
    HOST,
    SEED,
    bid_requests,
    free_port,
    load_generator_pinned,
    machine,
    started,
    write_report,
)
from loadtests.memory import RssSampler, peak_rss_bytes

MB = 1_000_000
PEAK_RSS_TARGET_MB = 200.0
GROWTH_TARGET = 0.05
QUICK = {"duration": 20.0, "warmup": 5.0, "window": 4.0}


@dataclass(frozen=True)
class SoakPlan:
    duration: float
    warmup: float
    window: float
    connections: int

    def __post_init__(self) -> None:
        if self.warmup + 2 * self.window > self.duration:
            raise ValueError(
                f"a {self.duration:g} s soak cannot hold a {self.warmup:g} s warm-up and two "
                f"{self.window:g} s windows"
            )


async def _soak(
    pid: int, target: Target, requests: list[Request], plan: SoakPlan
) -> tuple[LoadResult, RssSampler]:
    sampler = RssSampler(pid)
    sampling = asyncio.create_task(sampler.run())
    try:
        load = await run_closed_loop(
            target, requests, connections=plan.connections, duration=plan.duration
        )
    finally:
        sampler.stop()
        await sampling
    return load, sampler


def memory_verdict(sampler: RssSampler, peak_bytes: int, plan: SoakPlan) -> dict[str, Any]:
    """Peak RSS and growth after the warm-up, against their targets."""
    end = sampler.samples[-1][0]
    first = sampler.window_median(plan.warmup, plan.warmup + plan.window)
    last = sampler.window_median(end - plan.window, end + 1)
    if first is None or last is None:
        raise RuntimeError("too few RSS samples for the growth windows")
    growth = (last - first) / first
    peak_mb = peak_bytes / MB
    return {
        "peak_rss_mb": round(peak_mb, 1),
        "peak_rss_target_mb": PEAK_RSS_TARGET_MB,
        "first_window_median_rss_mb": round(first / MB, 1),
        "last_window_median_rss_mb": round(last / MB, 1),
        "growth": round(growth, 4),
        "growth_target": GROWTH_TARGET,
        "met": peak_mb <= PEAK_RSS_TARGET_MB and growth <= GROWTH_TARGET,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before growth counts")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per median window")
    parser.add_argument("--connections", type=int, default=64, help="closed-loop connections")
    parser.add_argument("--requests", type=int, default=2000, help="distinct bid requests")
    parser.add_argument(
        "--quick", action="store_true", help="a 20 s soak: 5 s warm-up, 4 s windows"
    )
    parser.add_argument("--out", type=Path, help="result JSON (default: loadtests/results/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
    try:
        plan = SoakPlan(args.duration, args.warmup, args.window, args.connections)
    except ValueError as exc:
        parser.error(str(exc))
    requests = bid_requests(args.requests)
    port = free_port()
    with load_generator_pinned() as pin, started("bidder", BIDDER, port, pin=pin) as process:
        load, sampler = run(_soak(process.pid, Target(HOST, port), requests, plan))
        peak = peak_rss_bytes(process.pid)
    verdict = memory_verdict(sampler, peak, plan)
    report = {
        "machine": machine(pin),
        "settings": {
            "duration_s": plan.duration,
            "warmup_s": plan.warmup,
            "window_s": plan.window,
            "connections": plan.connections,
            "distinct_requests": args.requests,
            "seed": SEED,
        },
        "memory": verdict,
        "throughput_rps": round(load.achieved_rate, 1),
        "load": load.to_dict(),
        "rss": sampler.to_dict(),
    }
    out = write_report(report, args.out, "soak")
    print(
        f"{plan.duration:g} s soak at {load.achieved_rate:,.0f} req/s "
        f"(statuses {load.to_dict()['statuses']}, errors {load.errors or '-'})\n"
        f"peak RSS {verdict['peak_rss_mb']:.1f} MB (target ≤ {PEAK_RSS_TARGET_MB:g} MB); "
        f"growth after the {plan.warmup:g} s warm-up {verdict['growth']:+.2%} "
        f"({verdict['first_window_median_rss_mb']:.1f} → "
        f"{verdict['last_window_median_rss_mb']:.1f} MB, target ≤ {GROWTH_TARGET:.0%})\n"
        f"written to {out}"
    )
    return 0 if verdict["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
