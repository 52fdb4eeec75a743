"""`bidder replay` and `bidder loadgen`: recorded or synthetic bid traffic against a bidder
on this machine, with a progress bar and a report (see the README's "Replaying traffic and
load tests")."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from bidder.traffic.loadgen import LoadResult, Request, Step, Target, Watcher, run, run_open_loop
from bidder.traffic.progress import ProgressBar
from bidder.traffic.recordings import read_recordings
from bidder.traffic.replay import BID_PATH, ScheduleError, SendOptions, replay, schedule_for
from bidder.traffic.report import (
    build_report,
    plot_report,
    render_text,
    require_matplotlib,
    schedule_warning,
    write_report,
)

BID_HEADERS = {"content-type": "application/json", "x-openrtb-version": "2.6"}
_DURATION = re.compile(r"^(?P<value>\d+(?:\.\d*)?|\.\d+)(?P<unit>ms|s|m)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


def add_commands(commands: Any) -> None:
    """Adds `replay` and `loadgen` to the `bidder` command's subparsers."""
    replay_parser = commands.add_parser(
        "replay", help="send recorded bid requests again, on their recorded clock"
    )
    replay_parser.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="recordings (*.jsonl.gz) or dirs"
    )
    pace = replay_parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=_positive(float), default=1.0, help="time scale (2 = twice as fast)"
    )
    pace.add_argument("--rate", type=_positive(float), help="fixed requests/s instead")
    replay_parser.add_argument(
        "--duration", type=duration, help="stop after this long (e.g. 30s, 2m; default: all)"
    )
    replay_parser.add_argument(
        "--loop", action="store_true", help="start over at the end (needs --duration)"
    )
    replay_parser.add_argument(
        "--max-records",
        type=_positive(int),
        default=1_000_000,
        help="most records read (all are held in memory; default 1,000,000)",
    )
    replay_parser.add_argument(
        "--examples", type=int, default=5, help="changed decisions listed per kind (default 5)"
    )
    _add_send_flags(replay_parser)
    replay_parser.set_defaults(run=_replay)

    loadgen = commands.add_parser(
        "loadgen", help="send synthetic bid requests at steps and ramps of offered load"
    )
    load = loadgen.add_mutually_exclusive_group(required=True)
    load.add_argument("--rate", type=_positive(float), help="requests/s for --duration")
    load.add_argument(
        "--steps",
        type=rates,
        metavar="RATE,RATE,...",
        help="constant rates one after the other, each for --step-duration, e.g. 2000,4000",
    )
    load.add_argument(
        "--ramp",
        type=ramp,
        metavar="FROM:TO:DURATION",
        help="a linear ramp of the rate, e.g. 1000:20000:30s, reported in --ramp-steps parts",
    )
    loadgen.add_argument(
        "--duration", type=duration, default=10.0, help="length of a --rate run (default 10s)"
    )
    loadgen.add_argument(
        "--step-duration", type=duration, default=10.0, help="length of each step (default 10s)"
    )
    loadgen.add_argument(
        "--ramp-steps",
        type=_positive(int),
        default=10,
        help="equal parts of the ramp reported on their own (default 10)",
    )
    loadgen.add_argument(
        "--requests", type=_positive(int), default=2000, help="distinct requests (cycled)"
    )
    loadgen.add_argument("--seed", type=int, default=2026, help="synthetic traffic seed")
    _add_send_flags(loadgen)
    loadgen.set_defaults(run=_loadgen)


def _add_send_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        type=target_url,
        required=True,
        help=f"bidder URL on loopback, e.g. http://127.0.0.1:8000 (path default {BID_PATH})",
    )
    parser.add_argument("--report", type=Path, help="write the report as JSON to this file")
    parser.add_argument("--plot", type=Path, help="draw latency over time and by percentile")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    parser.add_argument(
        "--max-connections", type=_positive(int), default=512, help="connection cap (512)"
    )
    parser.add_argument(
        "--timeout", type=_positive(float), default=5.0, help="seconds per request (5)"
    )
    parser.add_argument(
        "--late-ms",
        type=_positive(float),
        default=1.0,
        help="a send later than this behind schedule counts as late (default 1 ms)",
    )
    parser.add_argument(
        "--max-late-percent",
        type=float,
        default=1.0,
        help="warn when more sends than this were late (default 1 %%)",
    )


# Flag values.


def _positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        return value

    return parse


def duration(text: str) -> float:
    """`10s`, `500ms`, `2m` or plain seconds."""
    match = _DURATION.match(text.strip())
    if match is None or float(match["value"]) <= 0:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (a positive number with s, ms or m, e.g. 10s)"
        )
    return float(match["value"]) * _UNITS[match["unit"]]


def _rate(text: str, whole: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a rate in {whole!r}: {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"a rate must be >= 0 in {whole!r}")
    return value


def rates(text: str) -> list[float]:
    """`RATE,RATE,...`, e.g. `2000,4000,8000`."""
    return [_rate(part.strip(), text) for part in text.split(",")]


def ramp(text: str) -> tuple[float, float, float]:
    """`FROM:TO:DURATION`, e.g. `1000:20000:30s`: the rates and the length in seconds."""
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(
            f"expected FROM:TO:DURATION (e.g. 1000:20000:30s), got {text!r}"
        )
    start, end, length = parts
    return _rate(start, text), _rate(end, text), duration(length)


def load_phases(args: argparse.Namespace) -> list[Step]:
    """The offered load of `bidder loadgen`, as the steps reported one by one."""
    if args.steps is not None:
        return [Step(rate, args.step_duration) for rate in args.steps]
    if args.ramp is not None:
        start, end, length = args.ramp
        parts = args.ramp_steps
        slope = (end - start) / parts
        return [
            Step(start + slope * k, length / parts, end_rate=start + slope * (k + 1))
            for k in range(parts)
        ]
    return [Step(args.rate, args.duration)]


def target_url(text: str) -> tuple[Target, str]:
    """`http://HOST:PORT[/path]` on loopback: the target and the request path."""
    parts = urlsplit(text)
    if parts.scheme != "http" or not parts.hostname:
        raise argparse.ArgumentTypeError(f"expected http://HOST:PORT[/PATH], got {text!r}")
    try:
        target = Target(parts.hostname, parts.port or 80)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    path = parts.path if parts.path not in ("", "/") else BID_PATH
    return target, path + (f"?{parts.query}" if parts.query else "")


# Running.


def _send_options(args: argparse.Namespace) -> SendOptions:
    target, path = args.target
    if args.plot is not None:
        require_matplotlib()
    return SendOptions(
        target,
        path,
        max_connections=args.max_connections,
        request_timeout=args.timeout,
        late_threshold=args.late_ms / 1000,
    )


def _progress(
    args: argparse.Namespace, label: str, requests: int, seconds: float
) -> Watcher | None:
    shown = sys.stderr.isatty() if args.progress is None else args.progress
    if not shown:
        return None
    return ProgressBar(sys.stderr, label=label, requests=requests, seconds=seconds).watch


def _replay(args: argparse.Namespace) -> int:
    options = _send_options(args)
    recordings = read_recordings(args.files, max_records=args.max_records)
    try:
        schedule = schedule_for(
            recordings, speed=args.speed, rate=args.rate, limit=args.duration, loop=args.loop
        )
    except ScheduleError as exc:
        print(f"bidder replay: {exc}", file=sys.stderr)
        return 2
    watch = _progress(args, "replay", schedule.requests, schedule.duration)
    result, diff = run(
        replay(recordings, schedule, options, max_examples=max(0, args.examples), watch=watch)
    )
    return _finish(
        args, result, "replay", decisions=diff.to_dict(), recordings=recordings.summary()
    )


def _loadgen(args: argparse.Namespace) -> int:
    options = _send_options(args)
    phases = load_phases(args)
    if not any(phase.requests for phase in phases):
        print("bidder loadgen: the rates given make no request", file=sys.stderr)
        return 2
    templates = synthetic_requests(args.requests, args.seed, options.path)
    watch = _progress(
        args, "loadgen", sum(p.requests for p in phases), sum(p.duration for p in phases)
    )
    result = run(
        run_open_loop(
            options.target,
            templates,
            rate=phases,
            max_connections=options.max_connections,
            request_timeout=options.request_timeout,
            late_threshold=options.late_threshold,
            watch=watch,
            series=True,
        )
    )
    return _finish(args, result, "loadgen")


def synthetic_requests(count: int, seed: int, path: str) -> list[Request]:
    from bidder.traffic.synthetic import generate_bid_requests

    return [
        Request("POST", path, BID_HEADERS, orjson.dumps(body))
        for body in generate_bid_requests(count, seed)
    ]


def _finish(
    args: argparse.Namespace,
    result: LoadResult,
    kind: str,
    *,
    decisions: dict[str, Any] | None = None,
    recordings: dict[str, Any] | None = None,
) -> int:
    target, path = args.target
    report = build_report(
        result,
        kind=kind,
        target=f"http://{target.authority}{path}",
        late_threshold=args.late_ms / 1000,
        max_late_fraction=args.max_late_percent / 100,
        decisions=decisions,
        recordings=recordings,
    )
    print(render_text(report))
    warning = schedule_warning(report)
    if warning is not None:
        print(warning, file=sys.stderr)
    if args.report is not None:
        write_report(report, args.report)
    if args.plot is not None:
        plot_report(report, args.plot)
    # Nothing answered: the target is down or unreachable, which a script should notice.
    return 0 if result.completed else 1
