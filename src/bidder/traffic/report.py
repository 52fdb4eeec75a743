"""The report of a replay or load run: plain data (for `--report out.json`), text for the
terminal, the schedule warning, and a figure (for `--plot out.png`).

Latencies count from each request's intended send time (see `bidder.traffic.loadgen`), so
a sender that fell behind shows in them; `schedule` says how far behind it fell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bidder.errors import BidderError
from bidder.traffic.histogram import SUMMARY_PERCENTILES
from bidder.traffic.loadgen import LoadResult

LATENCY_FIELDS = (*(name for name, _ in SUMMARY_PERCENTILES), "max")
DELTA_FIELDS = ("min", "p10", "p50", "p90", "max", "mean")
# The percentiles the distribution plot marks on its (logarithmic) axis.
PLOT_PERCENTILES = (0.0, 90.0, 99.0, 99.9, 99.99)


class PlotError(BidderError):
    """`--plot` cannot be drawn (matplotlib is not installed)."""


def build_report(
    result: LoadResult,
    *,
    kind: str,
    target: str,
    late_threshold: float,
    max_late_fraction: float,
    decisions: dict[str, Any] | None = None,
    recordings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything about a finished run as JSON-ready data."""
    completed = result.completed
    late_fraction = result.late_sends / result.sent if result.sent else 0.0
    return {
        "kind": kind,
        "target": target,
        "duration_s": round(result.duration, 3),
        "offered_rate": None if result.offered_rate is None else round(result.offered_rate, 1),
        "achieved_rate": round(result.achieved_rate, 1),
        "sent": result.sent,
        "completed": completed,
        "connections": result.connections,
        "latency_ms": result.latency.to_dict(),
        "latency_histogram_ms": [
            [round(value * 1000, 4), count] for value, count in result.latency.buckets()
        ],
        "status_counts": {str(status): n for status, n in sorted(result.statuses.items())},
        "errors": dict(sorted(result.errors.items())),
        "bid_rate": round(result.statuses.get(200, 0) / completed, 6) if completed else None,
        "schedule": {
            "late_threshold_ms": round(late_threshold * 1000, 3),
            "late_sends": result.late_sends,
            "late_fraction": round(late_fraction, 6),
            "max_late_fraction": max_late_fraction,
            "kept": late_fraction <= max_late_fraction and not result.cap_waits,
            "send_lateness_ms": result.send_lateness.to_dict(),
            "cap_waits": result.cap_waits,
        },
        "steps": [phase.to_dict() for phase in result.phases],
        "series": [second.to_dict() for second in result.series or []],
        "decisions": decisions,
        "recordings": recordings,
    }


def write_report(report: dict[str, Any], path: Path) -> None:
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")


def schedule_warning(report: dict[str, Any]) -> str | None:
    """What to tell the user when the generator could not keep its schedule."""
    schedule = report["schedule"]
    if schedule["kept"]:
        return None
    problems = []
    if schedule["late_fraction"] > schedule["max_late_fraction"]:
        problems.append(
            f"{schedule['late_sends']:,} of {report['sent']:,} sends "
            f"({schedule['late_fraction']:.2%}) went out more than "
            f"{schedule['late_threshold_ms']:g} ms late "
            f"(p99 lateness {_ms(schedule['send_lateness_ms']['p99'])}, "
            f"max {_ms(schedule['send_lateness_ms']['max'])})"
        )
    if schedule["cap_waits"]:
        problems.append(
            f"{schedule['cap_waits']:,} requests waited for a connection at the cap "
            "(raise --max-connections)"
        )
    return (
        "warning: the load generator could not keep the schedule: "
        + "; ".join(problems)
        + ". Latencies include that delay; the offered load was lower than asked."
    )


def render_text(report: dict[str, Any]) -> str:
    """The report for a terminal."""
    latency = report["latency_ms"]
    schedule = report["schedule"]
    lines = [
        f"{report['kind']} against {report['target']}",
        f"sent {report['sent']:,} in {report['duration_s']:.1f} s: offered "
        f"{_rate(report['offered_rate'])}, achieved {_rate(report['achieved_rate'])} "
        f"over {report['connections']} connections",
        "latency from the intended send time: "
        + "  ".join(f"{name} {_ms(latency[name])}" for name in LATENCY_FIELDS),
        "statuses: " + _counts(report["status_counts"]),
        "errors: " + _counts(report["errors"]),
        "bid rate: "
        + ("-" if report["bid_rate"] is None else f"{report['bid_rate']:.2%} of answers"),
        f"schedule: {schedule['late_sends']:,} sends later than "
        f"{schedule['late_threshold_ms']:g} ms ({schedule['late_fraction']:.2%}), lateness "
        f"p99 {_ms(schedule['send_lateness_ms']['p99'])} max "
        f"{_ms(schedule['send_lateness_ms']['max'])}, {schedule['cap_waits']:,} waits for "
        "a connection",
    ]
    if report["steps"]:
        lines.extend(_step_lines(report["steps"]))
    if report["recordings"] is not None:
        recordings = report["recordings"]
        truncated = len(recordings["truncated_files"])
        lines.append(
            f"recordings: {recordings['records']:,} records in {recordings['files']} files"
            + (f" ({truncated} truncated)" if truncated else "")
        )
    if report["decisions"] is not None:
        lines.extend(_decision_lines(report["decisions"]))
    return "\n".join(lines)


def _step_lines(steps: list[dict[str, Any]]) -> list[str]:
    header = ("step", "offered/s", "achieved/s", "sent", *LATENCY_FIELDS, "late", "errors")
    rows = [header]
    for step in steps:
        offered = f"{step['offered_start_rate']:,.0f}"
        if step["offered_end_rate"] != step["offered_start_rate"]:
            offered += f"->{step['offered_end_rate']:,.0f}"
        latency = step["latency_ms"]
        rows.append(
            (
                str(step["step"]),
                offered,
                f"{step['achieved_rate']:,.0f}",
                f"{step['sent']:,}",
                *(
                    "-" if latency[name] is None else f"{latency[name]:.3f}"
                    for name in LATENCY_FIELDS
                ),
                f"{step['late_sends']:,}",
                f"{step['errors']:,}",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return ["per step (latencies in ms):"] + [
        "  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]


def _decision_lines(diff: dict[str, Any]) -> list[str]:
    compared = diff["compared"]
    imps = diff["imps"]
    delta = diff["price_delta"]
    lines = [
        f"decisions against the recording: {diff['same']:,} of {compared:,} requests the "
        f"same ({diff['same'] / compared if compared else 0:.2%}); bid rate "
        f"{_percent(diff['bid_rate']['recorded'])} recorded, "
        f"{_percent(diff['bid_rate']['replayed'])} now",
        "  outcomes (recorded->now): " + _counts(diff["outcomes"]),
        f"  impressions: {imps['compared']:,} compared, {imps['same']:,} the same, "
        f"{imps['bid_to_no_bid']:,} bid->no bid, {imps['no_bid_to_bid']:,} no bid->bid, "
        f"{imps['price_changed']:,} at another price",
    ]
    if delta["compared"]:
        lines.append(
            f"  price delta (now - recorded, CPM) over {delta['compared']:,} bids made both "
            f"times: {delta['increased']:,} up, {delta['decreased']:,} down; "
            + "  ".join(f"{name} {delta[name]:+.4f}" for name in DELTA_FIELDS)
        )
    if diff["unparsable"] or diff["unrecorded"]:
        lines.append(
            f"  not compared: {diff['unparsable']:,} bid answers that are not bid responses, "
            f"{diff['unrecorded']:,} records without a decision"
        )
    lines.extend(
        f"  e.g. {change}: request {example['id']}"
        + (f" imp {example['imp']}" if example["imp"] is not None else "")
        + f": {_side(example['recorded'])} -> {_side(example['replayed'])}"
        for change, examples in diff["examples"].items()
        for example in examples
    )
    return lines


def _side(side: Any) -> str:
    if isinstance(side, str):
        return side
    return f"bid {side['price']:.4f}" if side["bid"] else "no bid"


def _counts(counts: dict[str, int]) -> str:
    return "  ".join(f"{key} {n:,}" for key, n in counts.items()) or "none"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} req/s"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def require_matplotlib() -> None:
    """Fails early, before a run, when `--plot` could not be drawn after it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError(
            "--plot needs matplotlib, which is not installed: pip install matplotlib "
            "(it comes with the `dev` extra)"
        ) from None


def plot_report(report: dict[str, Any], path: Path) -> None:
    """Latency over the run (per second, by intended send time) above the latency
    distribution by percentile, HdrHistogram style."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (over_time, by_percentile) = plt.subplots(2, 1, figsize=(10, 8.5))
    figure.suptitle(
        f"{report['kind']}: {report['sent']:,} requests, offered "
        f"{_rate(report['offered_rate'])}, achieved {_rate(report['achieved_rate'])}"
    )
    series = report["series"]
    seconds = [second["t"] for second in series]
    for name, style in (("p50", "-"), ("p99", "-"), ("max", ":")):
        values = [second["latency_ms"][name] for second in series]
        over_time.plot(seconds, values, style, marker=".", label=name)
    over_time.set_yscale("log")
    over_time.set_xlabel("second of the run (intended send time)")
    over_time.set_ylabel("latency (ms)")
    over_time.grid(True, which="both", alpha=0.3)
    rates = over_time.twinx()
    rates.plot(seconds, [second["sent"] for second in series], color="grey", alpha=0.5)
    rates.set_ylabel("requests sent per second", color="grey")
    rates.set_ylim(bottom=0)
    over_time.legend(loc="upper left")
    over_time.set_title("latency over time")

    histogram = report["latency_histogram_ms"]
    total = sum(count for _, count in histogram)
    values, positions, seen = [], [], 0
    for value, count in histogram:
        seen += count
        if seen < total:
            values.append(value)
            positions.append(1 / (1 - seen / total))
    values.append(report["latency_ms"]["max"])
    positions.append(max([*positions, 1.0]) * 10)
    by_percentile.step(positions, values, where="post")
    by_percentile.set_xscale("log")
    ticks = [1 / (1 - p / 100) for p in PLOT_PERCENTILES]
    by_percentile.set_xticks(ticks, [f"{p:g}%" for p in PLOT_PERCENTILES])
    by_percentile.set_xlim(left=1)
    by_percentile.set_xlabel("percentile")
    by_percentile.set_ylabel("latency (ms)")
    by_percentile.grid(True, which="major", alpha=0.3)
    by_percentile.set_title("latency distribution (max at the right end)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
