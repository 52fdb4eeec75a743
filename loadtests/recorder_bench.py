"""CPU the traffic recorder's writer thread spends per record, by identifier mode.

    python -m loadtests.recorder_bench [--records 2000] [--repeats 5]

Synthetic bid requests (the benchmark's seed) are captured as the bid path captures them
and queued, then written by a `RecordWriter`'s thread: redaction, encoding, ISA-L
compression and file writes, measured as process CPU time per record (the median of
`--repeats` runs). The bid path's own share, copying a capture's record into the queue
(the answer's part of it encoded on the way), is measured beside it, in a queue emptied
between rounds so that its memory is reused as in a running bidder, for requests
declined as a whole and for requests whose impressions were each decided (the bid verdict,
one decision per impression: the longer answer to encode). Last, the `drop` mode's scan of
a body for its identifiers and its copy without them (`without_identifiers`), alone, with
the CPU's widest blocks and with SSE2's (`portable`), side by side.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry

from bidder.decision.policy import ImpDecision, NoBidReason
from bidder.openrtb import decode_bid_request
from bidder.recording import Capture
from bidder.recording.record import RecordEncoder
from bidder.recording.redaction import Redactor
from bidder.recording.speedups import compiled
from bidder.recording.writer import CaptureQueue, RecordWriter, WriterPolicy
from bidder.telemetry import Metrics
from bidder.traffic.synthetic import generate_bid_requests
from loadtests.harness import SEED

HEADERS = [(b"content-type", b"application/json"), (b"x-openrtb-version", b"2.6")]
MODES: dict[str, Redactor | None] = {
    "keep": None,
    "drop": Redactor("drop"),
    "hash": Redactor("hash", b"benchmark-hash-key"),
}


def captures(count: int) -> list[Capture]:
    """Requests declined as a whole (each impression recorded with the request's reason)."""
    made: list[Capture] = []
    for request in generate_bid_requests(count, seed=SEED):
        body = orjson.dumps(request)
        verdict = (204, decode_bid_request(body), "not_ready", None)
        made.append((time.time(), HEADERS, body, 0.0004, "bench", verdict))
    return made


def bid_captures(count: int) -> list[Capture]:
    """Requests bid on: the first impression bid, the others below their floors."""
    made: list[Capture] = []
    for request in generate_bid_requests(count, seed=SEED):
        body = orjson.dumps(request)
        decoded = decode_bid_request(body)
        imps = decoded.imp or []
        decisions = [ImpDecision(imps[0], 0.0312, 1.248)] + [
            ImpDecision(imp, 0.0071, 0.284, reason=NoBidReason.BELOW_FLOOR) for imp in imps[1:]
        ]
        made.append((time.time(), HEADERS, body, 0.00042, "bench", (200, decoded, None, decisions)))
    return made


# Room for every record a run queues.
QUEUE_BYTES = 1 << 31


def writer_cpu_per_record(made: list[Capture], redactor: Redactor | None) -> float:
    """Microseconds of CPU to write each capture, files included."""
    with tempfile.TemporaryDirectory(prefix="recorder-bench-") as directory:
        queue = CaptureQueue(len(made), QUEUE_BYTES)
        policy = WriterPolicy(max_bytes=1 << 28, max_seconds=3600.0, flush_seconds=1.0)
        metrics = Metrics(CollectorRegistry())
        writer = RecordWriter(queue, Path(directory), RecordEncoder(redactor), policy, metrics)
        for capture in made:
            queue.put(capture)  # the bid path's share, measured in `put_cost`
        started = time.process_time()  # this thread waits in `stop`: the CPU is the writer's
        writer.start()
        writer.stop(timeout=60.0)
        return (time.process_time() - started) / len(made) * 1e6


# Bytes of the hand-off's queue: a few rounds of records, so that it wraps, as in a running
# bidder, and its pages are in memory after the first pass.
PUT_QUEUE_BYTES = 16 << 20
# Rounds before the timed ones: the queue's first pass through its memory faults its pages
# in, which a running bidder does once.
PUT_WARMUP_ROUNDS = 10


def put_cost(made: list[Capture], rounds: int = 50) -> float:
    """Microseconds of the bid path's hand-off per request, into a queue emptied between
    rounds (untimed) as the writer empties it, its memory reused."""
    queue = CaptureQueue(len(made), PUT_QUEUE_BYTES)
    elapsed = 0.0
    for round_ in range(PUT_WARMUP_ROUNDS + rounds):
        started = time.perf_counter()
        for capture in made:
            queue.put(capture)
        if round_ >= PUT_WARMUP_ROUNDS:
            elapsed += time.perf_counter() - started
        if queue.dropped:
            raise RuntimeError(f"the hand-off's queue dropped {queue.dropped} records")
        while queue.pop() is not None:
            pass
    return elapsed / (len(made) * rounds) * 1e6


def scan_cost(bodies: list[bytes], portable: bool, rounds: int = 20) -> float:
    """Microseconds to scan a body and copy it without its identifiers (`drop`)."""
    assert compiled is not None
    tree = Redactor("drop").tree
    assert tree is not None
    scan = compiled.without_identifiers
    started = time.perf_counter()
    for _ in range(rounds):
        for body in bodies:
            scan(body, tree, portable)
    return (time.perf_counter() - started) / (len(bodies) * rounds) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.recorder_bench")
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    made = captures(args.records)
    print("| identifiers | writer CPU per record (us) |\n|---|---:|")
    for mode, redactor in MODES.items():
        median = statistics.median(
            writer_cpu_per_record(made, redactor) for _ in range(args.repeats)
        )
        print(f"| {mode} | {median:.2f} |")
    print("\n| hand-off on the bid path | us per sampled request |\n|---|---:|")
    for verdict, kind in (("declined", made), ("bid", bid_captures(args.records))):
        median = statistics.median(put_cost(kind) for _ in range(args.repeats))
        print(f"| {verdict} | {median:.2f} |")
    if compiled is not None:
        bodies = [capture[2] for capture in made]
        print("\n| identifier scan (`drop`), blocks | us per body |\n|---|---:|")
        for blocks, portable in (("widest", False), ("SSE2", True)):
            median = statistics.median(scan_cost(bodies, portable) for _ in range(args.repeats))
            print(f"| {blocks} | {median:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
