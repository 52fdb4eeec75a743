"""The bid-path benchmark: the bidder, its baselines and the load generator's own ceiling,
side by side in one run.

    python -m loadtests.bench [--duration 5] [--repeats 3] [--connections 64]
                              [--servers loadgen-ceiling,ceiling,fastapi-embedded,bidder]
                              [--interleave [--instances 1]] [--quick]
                              [--variant NAME=BASE:KEY=VALUE[,KEY=VALUE...]]
                              [--plot latency.png] [--out result.json]

Every server is started as a subprocess on a free 127.0.0.1 port, pinned to CPU 0; this
process, which runs the load generator, pins itself to CPU 1, so that server and generator
never compete for a core (on a machine with fewer than two CPUs nothing is pinned). Each
server gets the same synthetic OpenRTB 2.6 requests. For each one: a short warm-up,
`--repeats` closed-loop saturation runs (the median is its throughput), then an open-loop
run at half of that rate for p50/p99 latency; with `--plot`, open-loop runs at fractions
of its saturation draw latency against offered load. Results are printed as a markdown
table and written as JSON to `loadtests/results/`.

With `--interleave`, every server is started at once and they take turns instead: round
after round, one saturation run each (the order rotating), then the half-load runs the same
way, `--repeats` of them, whose median p99 is reported. A ratio is then the median of the
rounds' ratios, each of two runs a few seconds apart: on a shared machine whose speed
drifts from minute to minute, that is the steadier comparison. (Idle, a server costs the
one under load next to nothing: the bidder's lag timer stops when no request comes.)

`--instances N` starts N copies of each server, measured in turns like different servers,
a server's runs then being all its copies' (its saturation the median of them all, a ratio
the median over rounds and copies). Copies of one server differ by themselves: four
bidders measured over 25 rounds of one-second runs each ran at 0.964-1.000 of the fastest
(where memory and caches lay out differently from one process to another), so that one copy
of each tells a few percent apart only by chance.

`--variant NAME=BASE:KEY=VALUE,...` adds a server: BASE started with those environment
variables set (a setting's cost, measured beside the defaults in the same run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bidder.traffic.loadgen import LoadResult, Request, Target, run, run_open_loop
from loadtests.harness import (
    BIDDER,
    HOST,
    MODEL_SERVER,
    QUIET_BIDDER,
    SEED,
    ParsingServerProtocol,
    Saturation,
    Server,
    ServerFailed,
    Tally,
    bid_requests,
    bidder_command,
    free_port,
    load_generator_pinned,
    machine,
    merged,
    rotated,
    saturate_in_turns,
    started,
    tally_so_far,
    write_report,
)

SWEEP_FRACTIONS = (0.1, 0.25, 0.5, 0.7, 0.85, 1.0)
QUICK_SWEEP_FRACTIONS = (0.25, 0.5, 1.0)
DEFAULT_SERVERS = "loadgen-ceiling,ceiling,fastapi-embedded,bidder"
# Older result files and docs call the FastAPI baseline `baseline`.
ALIASES = {"baseline": "fastapi-embedded"}


@dataclass(frozen=True)
class Ratio:
    """Saturation of `server` over that of `reference`, and the least it should be."""

    server: str
    reference: str
    target: float | None = None


RATIOS = {
    "bidder/fastapi-embedded": Ratio("bidder", "fastapi-embedded", 5.0),
    "bidder/ceiling": Ratio("bidder", "ceiling", 0.60),
    "bidder-sagemaker/fastapi-embedded": Ratio("bidder-sagemaker", "fastapi-embedded"),
    "bidder-sagemaker/fastapi-sagemaker": Ratio("bidder-sagemaker", "fastapi-sagemaker", 8.0),
    "bidder-recording/bidder": Ratio("bidder-recording", "bidder", 0.90),
    "bidder-emf/bidder": Ratio("bidder-emf", "bidder", 0.98),
    "ceiling/loadgen-ceiling": Ratio("ceiling", "loadgen-ceiling"),
}
# Most p99 latency at half saturation, in milliseconds.
P99_TARGETS_MS = {"bidder": 5.0, "bidder-sagemaker": 10.0}

UVICORN = (
    *(sys.executable, "-m", "uvicorn", "--host", HOST, "--http", "httptools"),
    *("--loop", "uvloop", "--workers", "1", "--no-access-log", "--log-level", "warning"),
)
# The fake credentials and region botocore needs to sign calls to the local model server.
LOCAL_AWS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _uvicorn(app: str) -> Callable[[int], list[str]]:
    return lambda port: [*UVICORN, app, "--port", str(port)]


def _recording_dir(stack: contextlib.ExitStack) -> dict[str, str]:
    return {
        "BIDDER_RECORD_DIR": stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-rec-"))
    }


SERVERS: dict[str, Server] = {
    "loadgen-ceiling": Server(
        lambda port: [sys.executable, "-m", "loadtests.bench", "--serve-fixed", str(port)]
    ),
    "ceiling": Server(_uvicorn("loadtests.baselines.ceiling:app")),
    "fastapi-embedded": Server(_uvicorn("loadtests.baselines.fastapi_embedded:app")),
    "fastapi-sagemaker": Server(
        _uvicorn("loadtests.baselines.fastapi_sagemaker:app"),
        env=LOCAL_AWS,
        companion=MODEL_SERVER,
        companion_env=lambda port: {"BASELINE_ENDPOINT_URL": f"http://{HOST}:{port}"},
    ),
    "bidder": BIDDER,
    "bidder-sagemaker": Server(
        bidder_command,
        "/readyz",
        200,
        {
            **QUIET_BIDDER,
            **LOCAL_AWS,
            "BIDDER_SCORER": "sagemaker",
            "BIDDER_SAGEMAKER_ENDPOINT_NAME": "bench",
        },
        companion=MODEL_SERVER,
        companion_env=lambda port: {"BIDDER_SAGEMAKER_ENDPOINT_URL": f"http://{HOST}:{port}"},
    ),
    # Every request recorded, to a directory that lives as long as the server.
    "bidder-recording": Server(
        bidder_command,
        "/readyz",
        200,
        {**QUIET_BIDDER, "BIDDER_RECORD_SAMPLE_RATE": "1"},
        scoped_env=_recording_dir,
    ),
    # CloudWatch embedded metric format on stdout every second, stdout discarded.
    "bidder-emf": Server(
        bidder_command,
        "/readyz",
        200,
        {**QUIET_BIDDER, "BIDDER_EMF_SINK": "stdout", "BIDDER_EMF_INTERVAL_SECONDS": "1"},
        discard_stdout=True,
    ),
}


@dataclass(frozen=True)
class Lineup:
    """The servers a run may start and the ratios it reports: `SERVERS` and `RATIOS`, with
    any `--variant` added."""

    servers: Mapping[str, Server]
    ratios: Mapping[str, Ratio]


def with_variant(lineup: Lineup, spec: str) -> Lineup:
    """`lineup` with the variant `spec` names, `NAME=BASE:KEY=VALUE[,KEY=VALUE...]`: server
    BASE started with those environment variables set, reported as NAME, with the ratio
    NAME/BASE and every ratio BASE is held to, NAME held to the same bar. Raises ValueError
    naming what is wrong."""
    name, _, rest = spec.partition("=")
    base, _, pairs = rest.partition(":")
    name, base = name.strip(), base.strip()
    if not name or "/" in name or "," in name:
        raise ValueError(f"variant {spec!r}: give it a name without '/' or ',' before '='")
    if name in lineup.servers:
        raise ValueError(f"variant {spec!r}: {name} is already a server")
    if base not in lineup.servers:
        known = ", ".join(lineup.servers)
        raise ValueError(f"variant {spec!r}: no server {base!r}; known: {known}")
    env: dict[str, str] = {}
    for pair in filter(None, (each.strip() for each in pairs.split(","))):
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise ValueError(f"variant {spec!r}: {pair!r} is not KEY=VALUE")
        env[key] = value
    if not env:
        raise ValueError(f"variant {spec!r}: no KEY=VALUE after '{base}:'")
    server = lineup.servers[base]
    ratios = {f"{name}/{base}": Ratio(name, base)}
    for ratio in lineup.ratios.values():
        if ratio.server == base:
            ratios[f"{name}/{ratio.reference}"] = Ratio(name, ratio.reference, ratio.target)
    return Lineup(
        {**lineup.servers, name: replace(server, env={**server.env, **env})},
        {**lineup.ratios, **ratios},
    )


# --- the load generator's own ceiling ---

FIXED_204 = b"HTTP/1.1 204 No Content\r\n\r\n"


class _FixedResponder(ParsingServerProtocol):
    """Answers every request with a canned 204: far cheaper per request than any server
    measured, so what the generator reaches against it is the generator's own limit."""

    def on_message_complete(self) -> None:
        self.transport.write(FIXED_204)


def serve_fixed(port: int) -> None:
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_FixedResponder, HOST, port, backlog=1024)
        await server.serve_forever()

    run(serve())


# --- measuring ---


@dataclass(frozen=True)
class Plan:
    duration: float
    repeats: int
    connections: int
    warmup: float
    sweep: tuple[float, ...]

    def saturate_in_turns(
        self, targets: dict[str, Target], loads: dict[str, list[Request]]
    ) -> dict[str, Saturation]:
        """`harness.saturate_in_turns` with this plan's runs."""
        return saturate_in_turns(
            targets,
            loads,
            connections=self.connections,
            duration=self.duration,
            repeats=self.repeats,
            warmup=self.warmup,
        )


def measure(name: str, port: int, requests: list[Request], plan: Plan) -> dict[str, Any]:
    target = Target(HOST, port)
    before = tally_so_far(port)
    saturation = plan.saturate_in_turns({name: target}, {name: requests})[name]
    entry: dict[str, Any] = {
        "server": name,
        **saturation.to_dict(),
        **_tally_fields(tally_so_far(port) - before),
        "half_load": None,
    }
    if saturation.rate <= 0:
        return entry
    entry["half_load"] = _open(target, requests, saturation.rate / 2, plan.duration).to_dict()
    if plan.sweep:
        entry["sweep"] = _sweep(target, requests, saturation.rate, plan)
    return entry


def measure_alone(
    name: str, server: Server, requests: list[Request], plan: Plan, pin: bool
) -> dict[str, Any]:
    """One server started, measured and stopped."""
    port = free_port()
    try:
        with started(name, server, port, pin=pin):
            result = measure(name, port, requests, plan)
    except ServerFailed as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return {"server": name, "error": str(exc)}
    print(f"{name:18s} {result['saturation_rps']:>10,.0f} req/s", file=sys.stderr)
    return result


def measure_in_turns(
    servers: Mapping[str, Server],
    requests: list[Request],
    plan: Plan,
    pin: bool,
    instances: int = 1,
) -> list[dict[str, Any]]:
    """Every server started at once, `instances` times, and measured in turns (see the
    module's docstring); each server's runs are those of all its instances, round by round."""
    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as running:
        ports: dict[str, list[int]] = {}
        for name, server in servers.items():
            try:
                for _ in range(instances):
                    port = free_port()
                    running.enter_context(started(name, server, port, pin=pin))
                    ports.setdefault(name, []).append(port)
            except ServerFailed as exc:
                results[name] = {"server": name, "error": str(exc)}
                print(f"{name}: {exc}", file=sys.stderr)
                ports.pop(name, None)
        # One target per instance, `name#i`, in the order the rounds take them.
        instance_of = {
            f"{name}#{i}": (name, port)
            for name, each in ports.items()
            for i, port in enumerate(each)
        }
        targets = {key: Target(HOST, port) for key, (_, port) in instance_of.items()}
        before = {key: tally_so_far(port) for key, (_, port) in instance_of.items()}
        by_instance = plan.saturate_in_turns(targets, dict.fromkeys(targets, requests))
        tallies = dict.fromkeys(ports, Tally())
        for key, (name, port) in instance_of.items():
            tallies[name] += tally_so_far(port) - before[key]
        saturations = {
            name: Saturation(
                [
                    by_instance[f"{name}#{i}"].runs[round_]
                    for round_ in range(plan.repeats)
                    for i in range(len(each))
                ]
            )
            for name, each in ports.items()
        }
        half_loads: dict[str, list[LoadResult]] = {name: [] for name in ports}
        for round_ in range(plan.repeats):
            for key in rotated(list(targets), round_):
                name = instance_of[key][0]
                rate = saturations[name].rate
                if rate > 0:
                    half_loads[name].append(_open(targets[key], requests, rate / 2, plan.duration))
        for name, each in ports.items():
            saturation = saturations[name]
            halves = sorted(half_loads[name], key=lambda half: half.latency.percentile(99))
            entry: dict[str, Any] = {
                "server": name,
                "instances": len(each),
                **saturation.to_dict(),
                **_tally_fields(tallies[name]),
                "half_load": halves[len(halves) // 2].to_dict() if halves else None,
                "half_load_runs_p99_ms": [
                    round(half.latency.percentile(99) * 1000, 3) for half in half_loads[name]
                ],
            }
            if plan.sweep and saturation.rate > 0:
                entry["sweep"] = _sweep(targets[f"{name}#0"], requests, saturation.rate, plan)
            results[name] = entry
            print(f"{name:18s} {saturation.rate:>10,.0f} req/s", file=sys.stderr)
    return [results[name] for name in servers]


def _sweep(
    target: Target, requests: list[Request], saturation: float, plan: Plan
) -> list[dict[str, Any]]:
    sweep_duration = max(1.0, plan.duration)
    return [
        _open(target, requests, saturation * fraction, sweep_duration).to_dict()
        | {"fraction": fraction}
        for fraction in plan.sweep
    ]


def _open(target: Target, requests: list[Request], rate: float, duration: float) -> LoadResult:
    return run(run_open_loop(target, requests, rate=rate, duration=duration))


def ratios_by_round(
    results: list[dict[str, Any]], wanted: Mapping[str, Ratio] = RATIOS
) -> dict[str, list[float]]:
    """Each ratio in each round of runs taken in turns (the i-th runs of two servers)."""
    runs = {r["server"]: r.get("saturation_runs_rps") or [] for r in results}
    table = {}
    for label, ratio in wanted.items():
        server, reference = runs.get(ratio.server), runs.get(ratio.reference)
        if server and reference and len(server) == len(reference) and all(reference):
            table[label] = [round(a / b, 3) for a, b in zip(server, reference, strict=True)]
    return table


def ratios(results: list[dict[str, Any]], wanted: Mapping[str, Ratio] = RATIOS) -> dict[str, float]:
    rate = {r["server"]: r.get("saturation_rps", 0.0) for r in results}
    return {
        label: round(rate[ratio.server] / rate[ratio.reference], 3)
        for label, ratio in wanted.items()
        if rate.get(ratio.server) and rate.get(ratio.reference)
    }


# --- reporting ---


def markdown(
    results: list[dict[str, Any]],
    ratio_table: dict[str, float],
    by_round: dict[str, list[float]] | None = None,
    wanted: Mapping[str, Ratio] = RATIOS,
) -> str:
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
        errors = merged([r["saturation_errors"], (r["half_load"] or {}).get("errors", {})])
        lines.append(
            f"| {r['server']} | {r['saturation_rps']:,.0f} | "
            f"{' / '.join(f'{rate:,.0f}' for rate in r['saturation_runs_rps'])} | "
            f"{_ms(half.get('p50'))} | {_ms(half.get('p99'))} | {_ms(half.get('p99.9'))} | "
            f"{r['saturation_statuses']}{_tally(r)} | {errors or '-'} |"
        )
    lines.append("")
    dropped = {r["server"]: r.get("saturation_records_dropped") for r in results}
    for label, value in ratio_table.items():
        ratio = wanted[label]
        verdict = "" if ratio.target is None else f" (target ≥ {ratio.target:g}×: "
        if ratio.target is not None and dropped.get(ratio.server):
            # Records dropped are work left undone: the rate does not count against the bar.
            verdict += f"not measured, {dropped[ratio.server]:,.0f} records dropped)"
        elif ratio.target is not None:
            verdict += f"{_verdict(value >= ratio.target)})"
        rounds = (by_round or {}).get(label)
        each = (
            "" if rounds is None else f", median of rounds {' / '.join(f'{r:.2f}' for r in rounds)}"
        )
        # Three decimals: 0.895 printed as 0.90 would read as the 0.90 bar met.
        lines.append(f"- {label}: **{value:.3f}×**{each}{verdict}")
    for r in results:
        p99 = ((r.get("half_load") or {}).get("latency_ms") or {}).get("p99")
        limit = P99_TARGETS_MS.get(r["server"])
        if limit is not None and p99 is not None:
            runs = r.get("half_load_runs_p99_ms")
            each = "" if not runs else f", median of runs {' / '.join(f'{p:.2f}' for p in runs)}"
            lines.append(
                f"- {r['server']} p99 at half saturation: **{p99:.2f} ms**{each} "
                f"(target ≤ {limit:g} ms: {_verdict(p99 <= limit)})"
            )
    return "\n".join(lines)


def _tally_fields(tally: Tally) -> dict[str, float]:
    """During the saturation runs, warm-ups included: requests answered with an overload
    no-bid instead of a decision, and records the recorder dropped instead of writing. A
    bidder's saturation rate is its decisions' rate, every one recorded where it records,
    only while both stay near 0."""
    return {"saturation_shed": tally.shed, "saturation_records_dropped": tally.records_dropped}


def _tally(result: dict[str, Any]) -> str:
    shed = result.get("saturation_shed")
    dropped = result.get("saturation_records_dropped")
    return (f", shed {shed:,.0f}" if shed else "") + (
        f", records dropped {dropped:,.0f}" if dropped else ""
    )


def _verdict(met: bool) -> str:
    return "met" if met else "missed"


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
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=BASE:KEY=VALUE[,KEY=VALUE...]",
        help="also measure server BASE started with these environment variables, as NAME, "
        "e.g. nice0=bidder-recording:BIDDER_RECORD_WRITER_NICE=0; repeatable",
    )
    parser.add_argument("--requests", type=int, default=2000, help="distinct bid requests")
    parser.add_argument(
        "--interleave", action="store_true", help="start every server at once, measure in turns"
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="with --interleave, copies of each server started and measured in turns",
    )
    parser.add_argument("--quick", action="store_true", help="short settings for a smoke run")
    parser.add_argument("--plot", type=Path, help="draw latency against offered load (PNG)")
    parser.add_argument("--out", type=Path, help="result JSON (default: loadtests/results/)")
    parser.add_argument("--serve-fixed", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser


def selected(
    parser: argparse.ArgumentParser, servers: str, variants: list[str]
) -> tuple[Lineup, list[str]]:
    """The lineup with `--variant`'s servers added, and the names of the servers to measure:
    `--servers` (comma-separated, aliases resolved), then the variants. A variant or a
    server it cannot make is the command's usage error (exit 2, the reason named)."""
    lineup = Lineup(SERVERS, RATIOS)
    for spec in variants:
        try:
            lineup = with_variant(lineup, spec)
        except ValueError as exc:
            parser.error(str(exc))
    names = [ALIASES.get(n.strip(), n.strip()) for n in servers.split(",") if n.strip()]
    names += [name for name in lineup.servers if name not in SERVERS and name not in names]
    unknown = sorted(set(names) - set(lineup.servers))
    if unknown:
        parser.error(f"unknown servers {unknown}; known: {', '.join(lineup.servers)}")
    return lineup, names


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.serve_fixed is not None:
        serve_fixed(args.serve_fixed)
        return 0
    lineup, names = selected(parser, args.servers, args.variant)
    servers = {name: lineup.servers[name] for name in names}
    if args.instances < 1 or (args.instances > 1 and not args.interleave):
        parser.error("--instances takes a number from 1, and more than 1 only with --interleave")
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
    with load_generator_pinned() as pin:
        if args.interleave:
            results = measure_in_turns(servers, requests, plan, pin, args.instances)
        else:
            results = [
                measure_alone(name, server, requests, plan, pin) for name, server in servers.items()
            ]
    measured = [r for r in results if "error" not in r]
    by_round = ratios_by_round(measured, lineup.ratios) if args.interleave else {}
    ratio_table = ratios(measured, lineup.ratios)
    ratio_table |= {label: round(statistics.median(each), 3) for label, each in by_round.items()}
    report = {
        "machine": machine(pin),
        "settings": {
            "duration_s": plan.duration,
            "repeats": plan.repeats,
            "connections": plan.connections,
            "distinct_requests": args.requests,
            "seed": SEED,
            "quick": args.quick,
            "interleave": args.interleave,
            "instances": args.instances,
            "variants": args.variant,
            "sweep_fractions": list(plan.sweep),
        },
        "results": results,
        "ratios": ratio_table,
        "ratios_by_round": by_round,
    }
    out = write_report(report, args.out, "bench")
    print(markdown(results, ratio_table, by_round, lineup.ratios))
    print(f"\nwritten to {out}")
    if args.plot is not None:
        drawn = plot(results, args.plot)
        print(f"plot: {args.plot}" if drawn else "plot skipped: matplotlib is not installed")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
