"""A recorder writing in a process of its own, to be killed: `python -m
tests.recording.crash_writer DIR`. It writes 100 records, waits until they are flushed,
prints `flushed 100`, then queues more and writes them without end."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from bidder.recording.record import RecordEncoder
from bidder.recording.writer import CaptureQueue, RecordWriter, WriterPolicy
from bidder.telemetry import Metrics
from tests.recording.helpers import captures

FLUSH_SECONDS = 0.05


def main(directory: Path) -> None:
    queue = CaptureQueue(100_000, 1 << 28)
    policy = WriterPolicy(
        max_bytes=1 << 28,
        max_seconds=3600,
        flush_seconds=FLUSH_SECONDS,
        drain_seconds=FLUSH_SECONDS,
    )
    writer = RecordWriter(
        queue, directory, RecordEncoder(None), policy, Metrics(CollectorRegistry())
    )
    writer.start()
    for capture in captures(100):
        queue.put(capture)
    # The writer drains every 50 ms and flushes a member once it is 50 ms old.
    while len(queue):
        time.sleep(0.01)
    time.sleep(FLUSH_SECONDS * 6)
    print("flushed 100", flush=True)
    more = captures(50, seed=2)
    while True:
        for capture in more:
            queue.put(capture)
        time.sleep(0.01)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
