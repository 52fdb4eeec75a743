"""How fast one `bidder replay` process sends: recorded bid requests replayed at rising
fixed rates against the raw responder of `bench.py` (`loadgen-ceiling`, a canned 204), so
that the replay itself is what is measured.

    .venv/bin/python -m loadtests.replay_bench                   # 10k, 15k, 20k, 25k req/s
    .venv/bin/python -m loadtests.replay_bench --rates 15000 --duration 10

The replay runs in this process, pinned to one CPU (the responder to another), the whole
way `bidder replay` runs it: records read from a gzip recording, the decision diff fed with
every answer. A rate is kept when every request was answered and at most 1 % of the sends
went out more than 1 ms behind schedule. On a machine shared with other work the replay
may not get its CPU, and miss rates it could keep: requests sent per CPU-second of this
process says what one core does whatever else runs (a lower bound, since the sender
spins while it is ahead of its schedule).
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bidder.traffic.loadgen import Target, run
from bidder.traffic.recordings import read_recordings
from bidder.traffic.replay import SendOptions, replay, schedule_for
from bidder.traffic.synthetic import generate_bid_requests
from loadtests.bench import SERVERS
from loadtests.harness import (
    BID_HEADERS,
    HOST,
    SEED,
    free_port,
    load_generator_pinned,
    machine,
    started,
    write_report,
)

KEPT_LATE_FRACTION = 0.01


def write_recording(path: Path, count: int) -> None:
    """`count` synthetic requests recorded 1 ms apart, each with a recorded no-bid."""
    lines = [
        orjson.dumps(
            {
                "v": 1,
                "id": request["id"],
                "ts": 1_700_000_000 + n / 1000,
                "headers": BID_HEADERS,
                "body": request,
                "status": 204,
                "latency_ms": 0.5,
                "model_version": "bench",
                "decision": {
                    "outcome": "no_bid",
                    "reason": None,
                    "imps": [
                        {"id": imp["id"], "bid": False, "price": None, "score": None}
                        for imp in request["imp"]
                    ],
                },
            }
        )
        for n, request in enumerate(generate_bid_requests(count, SEED))
    ]
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))


def measure(target: Target, recording: Path, rate: float, duration: float) -> dict[str, Any]:
    recordings = read_recordings([recording], max_records=1_000_000)
    schedule = schedule_for(recordings, rate=rate, limit=duration, loop=True)
    cpu, wall = time.process_time(), time.perf_counter()
    result, diff = run(replay(recordings, schedule, SendOptions(target)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    late_fraction = result.late_sends / result.sent if result.sent else 0.0
    return {
        "rate": rate,
        "sent": result.sent,
        "completed": result.completed,
        "achieved_rps": round(result.achieved_rate, 1),
        "late_sends": result.late_sends,
        "late_fraction": round(late_fraction, 5),
        "send_lateness_ms": result.send_lateness.to_dict(),
        "cap_waits": result.cap_waits,
        "connections": result.connections,
        "errors": result.errors,
        "compared": diff.compared,
        "cpu_share": round(cpu / wall, 3),
        "sent_per_cpu_second": round(result.sent / cpu) if cpu > 0 else None,
        "kept": result.completed == schedule.requests
        and late_fraction <= KEPT_LATE_FRACTION
        and not result.cap_waits,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.replay_bench", description=__doc__)
    parser.add_argument("--rates", default="10000,15000,20000,25000", help="req/s, in order")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per rate")
    parser.add_argument("--records", type=int, default=20_000, help="records in the recording")
    parser.add_argument("--out", type=Path, help="result file (default loadtests/results/)")
    args = parser.parse_args(argv)
    rates = [float(rate) for rate in args.rates.split(",")]
    runs = []
    with tempfile.TemporaryDirectory() as scratch, load_generator_pinned() as pinned:
        recording = Path(scratch) / "bench.jsonl.gz"
        write_recording(recording, args.records)
        port = free_port()
        with started("loadgen-ceiling", SERVERS["loadgen-ceiling"], port, pin=pinned):
            target = Target(HOST, port)
            for rate in rates:
                outcome = measure(target, recording, rate, args.duration)
                runs.append(outcome)
                lateness = outcome["send_lateness_ms"]
                print(
                    f"{rate:>8,.0f} req/s offered: {outcome['achieved_rps']:>9,.1f} achieved, "
                    f"{outcome['late_sends']:,} sends >1 ms late "
                    f"({outcome['late_fraction']:.2%}, p99 {lateness['p99']} ms, "
                    f"max {lateness['max']} ms), {outcome['cap_waits']} cap waits, "
                    f"CPU {outcome['cpu_share']:.0%} ({outcome['sent_per_cpu_second']:,} sent per "
                    f"CPU-second): {'kept' if outcome['kept'] else 'NOT kept'}"
                )
    report = {"scenario": "replay", "machine": machine(pinned), "runs": runs}
    print(f"wrote {write_report(report, args.out, 'replay')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
