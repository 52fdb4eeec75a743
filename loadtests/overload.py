"""Overload: open-loop offered load at twice the bidder's saturation rate, between two calm
stretches, against what the deadline issue promises.

    python -m loadtests.overload [--calm 3] [--overload 10] [--recovery 5] [--factor 2.0]
                                 [--repeats 3] [--quick] [--out result.json]

`bidder serve` (one worker, pinned to CPU 0 as in the benchmark, default settings: the
admission control on) is first saturated closed-loop (the median of three runs is its
saturation rate S). Then, in one open-loop run without a pause, it gets S/2 for `--calm`
seconds, `--factor` x S for `--overload` seconds and S/2 again for `--recovery` seconds,
latency counted from each request's intended send time. Measured, as the median over
`--repeats` such runs:

- latency of every answer during the overload against the longest budget
  (`BIDDER_DEADLINE_CEILING_MS`) + 5 ms: its maximum, and p99 / p99.9;
- bid-path throughput during the overload: answers that went through the model (all
  answers minus those shed, read from `bidder_no_bids_total{reason="overload"}`) per
  second, against S (target ≥ 90 %);
- memory: the worker's peak RSS during the runs against its RSS before;
- recovery: seconds from the end of the overload until every later second's p99 is back
  within twice the calm stretch's p99 (+ 1 ms), at the per-second resolution of the run's
  series (target ≤ 2 s).

Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bidder.settings import Settings
from bidder.traffic.loadgen import LoadResult, Request, Step, Target, run, run_open_loop
from loadtests.harness import (
    BIDDER,
    HOST,
    bid_requests,
    free_port,
    load_generator_pinned,
    machine,
    saturate,
    started,
    tally_so_far,
    write_report,
)
from loadtests.memory import RssSampler, peak_rss_bytes, rss_bytes

MIB = 1024 * 1024
LATENCY_MARGIN_MS = 5.0
THROUGHPUT_TARGET = 0.90
RECOVERY_TARGET_S = 2.0


@dataclass(frozen=True)
class Plan:
    calm: float
    overload: float
    recovery: float
    factor: float
    repeats: int
    saturation_duration: float
    connections: int

    def steps(self, saturation: float) -> list[Step]:
        return [
            Step(saturation / 2, self.calm),
            Step(saturation * self.factor, self.overload),
            Step(saturation / 2, self.recovery),
        ]


def overloaded_run(
    pid: int, port: int, requests: list[Request], saturation: float, plan: Plan
) -> dict[str, Any]:
    """One calm → overload → calm run, and what it shows."""
    sampler = RssSampler(pid)
    rss_before = rss_bytes(pid)
    shed_before = tally_so_far(port).shed

    async def sampled(result: LoadResult) -> None:
        await sampler.run()

    load = run(
        run_open_loop(
            Target(HOST, port),
            requests,
            rate=plan.steps(saturation),
            series=True,
            max_connections=2048,
            watch=sampled,
        )
    )
    shed = tally_so_far(port).shed - shed_before
    calm, overload, _ = load.phases
    # Shedding only happens while overloaded (or as it ends): all of it counts against the
    # overload stretch, which makes the bid-path figure, if anything, pessimistic.
    through_model = (overload.completed - shed) / overload.duration
    latency = overload.latency.to_dict()
    return {
        "offered_rps": round(saturation * plan.factor, 1),
        "answered": load.completed,
        "errors": load.errors,
        "statuses": {str(s): n for s, n in sorted(load.statuses.items())},
        "late_sends": load.late_sends,
        "shed": int(shed),
        "overload_latency_ms": latency,
        "calm_latency_ms": calm.latency.to_dict(),
        "bid_path_rps": round(through_model, 1),
        "bid_path_vs_saturation": round(through_model / saturation, 3),
        "recovery_s": recovery_seconds(load, plan),
        "rss_before_mib": round(rss_before / MIB, 1),
        "rss_max_mib": round(max((rss for _, rss in sampler.samples), default=0) / MIB, 1),
        "series": [second.to_dict() for second in load.series or []],
    }


def recovery_seconds(load: LoadResult, plan: Plan) -> float | None:
    """Whole seconds after the overload until every later second is back to calm latency;
    None if it never was within the run."""
    calm_p99 = load.phases[0].latency.percentile(99)
    normal = max(2 * calm_p99, calm_p99 + 0.001)
    overload_end = plan.calm + plan.overload
    after = [s for s in load.series or [] if s.second >= overload_end and s.latency.count]
    for index, second in enumerate(after):
        if all(s.latency.percentile(99) <= normal for s in after[index:]):
            return round(second.second - overload_end, 1)
    return None


def verdicts(runs: list[dict[str, Any]], ceiling_ms: float, peak_mib: float) -> dict[str, Any]:
    def median(key: str, inner: str | None = None) -> float | None:
        values = [r[key][inner] if inner else r[key] for r in runs]
        present = [v for v in values if v is not None]
        return statistics.median(present) if len(present) == len(values) else None

    max_latency = median("overload_latency_ms", "max")
    bid_path = median("bid_path_vs_saturation")
    recovery = median("recovery_s")
    server_errors = sum(n for r in runs for s, n in r["statuses"].items() if s.startswith("5"))
    return {
        "max_latency_ms": max_latency,
        "latency_bound_ms": ceiling_ms + LATENCY_MARGIN_MS,
        "latency_met": max_latency is not None and max_latency <= ceiling_ms + LATENCY_MARGIN_MS,
        "bid_path_vs_saturation": bid_path,
        "throughput_met": bid_path is not None and bid_path >= THROUGHPUT_TARGET,
        "recovery_s": recovery,
        "recovery_met": recovery is not None and recovery <= RECOVERY_TARGET_S,
        "peak_rss_mib": peak_mib,
        "server_errors": server_errors,
        "transport_errors": sum(sum(r["errors"].values()) for r in runs),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.overload",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--calm", type=float, default=3.0, help="seconds at S/2 before")
    parser.add_argument("--overload", type=float, default=10.0, help="seconds at factor x S")
    parser.add_argument("--recovery", type=float, default=5.0, help="seconds at S/2 after")
    parser.add_argument("--factor", type=float, default=2.0, help="overload, × saturation")
    parser.add_argument("--repeats", type=int, default=3, help="overloaded runs")
    parser.add_argument("--connections", type=int, default=64, help="closed-loop connections")
    parser.add_argument("--requests", type=int, default=2000, help="distinct bid requests")
    parser.add_argument("--quick", action="store_true", help="short settings for a smoke run")
    parser.add_argument("--out", type=Path, help="result JSON (default: loadtests/results/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.calm, args.overload, args.recovery, args.repeats = 1.0, 2.0, 3.0, 1
    plan = Plan(
        calm=args.calm,
        overload=args.overload,
        recovery=args.recovery,
        factor=args.factor,
        repeats=args.repeats,
        saturation_duration=1.0 if args.quick else 5.0,
        connections=args.connections,
    )
    requests = bid_requests(args.requests)
    ceiling_ms = float(Settings.model_fields["deadline_ceiling_ms"].default)
    port = free_port()
    with load_generator_pinned() as pin, started("bidder", BIDDER, port, pin=pin) as process:
        saturation = saturate(
            Target(HOST, port),
            requests,
            connections=plan.connections,
            duration=plan.saturation_duration,
            repeats=1 if args.quick else 3,
            warmup=0.5,
        )
        runs = [
            overloaded_run(process.pid, port, requests, saturation.rate, plan)
            for _ in range(plan.repeats)
        ]
        peak_mib = round(peak_rss_bytes(process.pid) / MIB, 1)
    verdict = verdicts(runs, ceiling_ms, peak_mib)
    report = {
        "machine": machine(pin),
        "plan": {**vars(args), "out": None if args.out is None else str(args.out)},
        "saturation": saturation.to_dict(),
        "runs": runs,
        "verdict": verdict,
    }
    out = write_report(report, args.out, "overload")
    print(summary(saturation.rate, runs, verdict))
    print(f"\nwritten to {out}", file=sys.stderr)
    met = verdict["latency_met"] and verdict["throughput_met"] and verdict["recovery_met"]
    return 0 if met and not verdict["server_errors"] else 1


def summary(saturation: float, runs: list[dict[str, Any]], verdict: dict[str, Any]) -> str:
    lines = [
        f"saturation: {saturation:,.0f} req/s; offered during the overload: "
        f"{runs[0]['offered_rps']:,.0f} req/s",
        "",
        "| run | answered | shed | bid path req/s | x saturation | p99 ms | p99.9 ms | max ms "
        "| recovery s | RSS MiB before → max |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for index, r in enumerate(runs, 1):
        latency = r["overload_latency_ms"]
        lines.append(
            f"| {index} | {r['answered']:,} | {r['shed']:,} | {r['bid_path_rps']:,.0f} "
            f"| {r['bid_path_vs_saturation']:.2f} | {latency['p99']} | {latency['p99.9']} "
            f"| {latency['max']} | {r['recovery_s']} "
            f"| {r['rss_before_mib']} → {r['rss_max_mib']} |"
        )
    lines += ["", *(f"- {key}: {value}" for key, value in verdict.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
