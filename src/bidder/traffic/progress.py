"""A one-line progress bar for load runs, redrawn a few times a second on a terminal.

It reads the run's live `LoadResult` from a task on the run's own event loop, so it costs
the sender one short write per redraw and nothing per request.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TextIO

from bidder.traffic.loadgen import LoadResult

REDRAW_INTERVAL = 0.25
BAR_WIDTH = 24
_CLEAR_LINE = "\r\x1b[K"


class ProgressBar:
    """Draws `label [####----] 42% 12.6/30.0 s  sent ...` over itself on `stream`."""

    def __init__(self, stream: TextIO, *, label: str, requests: int, seconds: float) -> None:
        self.stream = stream
        self.label = label
        self.requests = requests
        self.seconds = seconds

    async def watch(self, result: LoadResult) -> None:
        """Redraws until cancelled at the end of the run, then leaves the last line."""
        try:
            while True:
                self.draw(result)
                await asyncio.sleep(REDRAW_INTERVAL)
        finally:
            self.draw(result)
            self.stream.write("\n")
            self.stream.flush()

    def draw(self, result: LoadResult) -> None:
        self.stream.write(_CLEAR_LINE + self.line(result, time.perf_counter() - result.start))
        self.stream.flush()

    def line(self, result: LoadResult, elapsed: float) -> str:
        done = result.sent / self.requests if self.requests else 1.0
        filled = min(BAR_WIDTH, int(done * BAR_WIDTH))
        rate = result.completed / elapsed if elapsed > 0 else 0.0
        p99 = result.latency.percentile(99.0) * 1000
        errors = sum(result.errors.values())
        return (
            f"{self.label} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done:4.0%} "
            f"{min(max(elapsed, 0.0), self.seconds):5.1f}/{self.seconds:.1f} s  "
            f"sent {result.sent:,}  answered {result.completed:,} ({rate:,.0f}/s)  "
            f"p99 {'-' if math.isnan(p99) else f'{p99:.2f} ms'}  "
            f"late {result.late_sends:,}  errors {errors:,}"
        )
