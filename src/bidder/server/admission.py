"""Admission control: shed what cannot be answered in time, instead of queueing it.

A bidder that queues under overload answers everything late, and a late bid is worth
nothing. So a request is admitted only while the requests already admitted would be done
within `max_queue_delay` at the rate the bidder has recently shown it can complete them
(Little's law: expected wait = in flight / completion rate). Past that, a new request is
answered at once with a no-bid, which costs a small fraction of bidding on it, so the
requests that are admitted keep their latency and the throughput of real decisions stays
near the saturation rate.

The completion rate is the recent peak, measured over short windows and decaying slowly,
so it tracks capacity (what the bidder completes when it is busy) rather than the offered
load, and it adapts when capacity changes (a slower endpoint, a bigger model). Below
`min_concurrency` requests in flight nothing is shed, whatever the estimate says.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

# Completion counting is checked every this many completions: cheap enough per request,
# frequent enough at any rate worth shedding at.
_CHECK_EVERY: Final = 32


class AdmissionControl:
    """Counts the bid requests in flight and says when a new one should be shed."""

    __slots__ = (
        "_clock",
        "_completed",
        "_peak_rate",
        "_window_start",
        "decay",
        "in_flight",
        "limit",
        "max_queue_delay",
        "min_concurrency",
        "window",
    )

    def __init__(
        self,
        *,
        max_queue_delay: float,
        min_concurrency: int,
        window: float = 0.1,
        decay: float = 0.9,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.max_queue_delay = max_queue_delay
        self.min_concurrency = min_concurrency
        self.window = window
        self.decay = decay
        self.in_flight = 0
        self.limit = min_concurrency
        self._completed = 0
        self._peak_rate = 0.0
        self._clock = clock
        self._window_start = clock()

    def overloaded(self) -> bool:
        """True when a request arriving now could not start within `max_queue_delay`."""
        return self.in_flight >= self.limit

    def started(self) -> None:
        self.in_flight += 1

    def finished(self) -> None:
        self.in_flight -= 1
        self._completed += 1
        if self._completed % _CHECK_EVERY == 0:
            self._measure()

    def _measure(self) -> None:
        now = self._clock()
        elapsed = now - self._window_start
        if elapsed < self.window:
            return
        rate = self._completed / elapsed
        self._peak_rate = max(rate, self._peak_rate * self.decay)
        self.limit = max(self.min_concurrency, int(self._peak_rate * self.max_queue_delay))
        self._completed = 0
        self._window_start = now
