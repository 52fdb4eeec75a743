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

Requests in flight are only those the bidder has read. Past saturation the rest wait in
the sockets, unseen, while the event loop works through a turn longer than the last: an
offered load the bidder cannot read as fast as it comes would queue there without bound,
and answers would come seconds late however few were admitted. So the loop's lag is the
second signal: a timer due every `LAG_INTERVAL` measures how late it runs, which is how
long the loop's last turn kept it (and the requests that arrived meanwhile) waiting. While
that lag exceeds `max_loop_lag` (`LATE_BEATS` times in a row), every new request is shed:
a shed costs a fraction of a bid, so the next turns are short and the backlog drains, and
admission resumes as soon as the loop is on time again. The timer stops once no request has
started for `IDLE_BEATS` beats with none in flight, and the next request starts it again: a
wake-up per millisecond cost an idle bidder about 5 % of a core on a virtual machine, and
a loop with no requests to delay has no lag worth measuring.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

# Completion counting is checked every this many completions: cheap enough per request,
# frequent enough at any rate worth shedding at.
_CHECK_EVERY: Final = 32
# The lag timer's period: the event loop's timers have a resolution of 1 ms anyway, and a
# wake-up per millisecond costs an idle bidder a few system calls.
LAG_INTERVAL: Final = 0.001
# Late this many times in a row: a late turn or two (a garbage collection, a busy moment) is
# a pause, not a backlog, and shedding what arrives after it would only lose bids.
LATE_BEATS: Final = 3
# Beats without a request started or in flight before the timer stops: long enough that a
# lull between two requests of light traffic keeps it running.
IDLE_BEATS: Final = 100


class AdmissionControl:
    """Counts the bid requests in flight and says when a new one should be shed."""

    __slots__ = (
        "_clock",
        "_completed",
        "_lag_due",
        "_lag_loop",
        "_lag_timer",
        "_late_beats",
        "_peak_rate",
        "_quiet_beats",
        "_started_since_beat",
        "_window_start",
        "decay",
        "in_flight",
        "lagging",
        "limit",
        "max_loop_lag",
        "max_queue_delay",
        "min_concurrency",
        "window",
    )

    def __init__(
        self,
        *,
        max_queue_delay: float,
        min_concurrency: int,
        max_loop_lag: float = float("inf"),
        window: float = 0.1,
        decay: float = 0.9,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.max_queue_delay = max_queue_delay
        self.min_concurrency = min_concurrency
        self.max_loop_lag = max_loop_lag
        # Set by the lag timer: the loop ran it more than `max_loop_lag` late.
        self.lagging = False
        self._lag_timer: asyncio.TimerHandle | None = None
        self._lag_loop: asyncio.AbstractEventLoop | None = None
        self._lag_due = 0.0
        self._late_beats = 0
        self._quiet_beats = 0
        self._started_since_beat = False
        self.window = window
        self.decay = decay
        self.in_flight = 0
        self.limit = min_concurrency
        self._completed = 0
        self._peak_rate = 0.0
        self._clock = clock
        self._window_start = clock()

    def overloaded(self) -> bool:
        """True when a request arriving now could not start within `max_queue_delay`, or
        the event loop is running late."""
        return self.in_flight >= self.limit or self.lagging

    def watch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Measure `loop`'s lag from now on (again, on a new loop; once per loop)."""
        if self.max_loop_lag == float("inf") or (
            self._lag_timer is not None and self._lag_loop is loop
        ):
            return
        self._lag_loop = loop
        self._late_beats = 0
        self._quiet_beats = 0
        self.lagging = False
        self._lag_due = loop.time() + LAG_INTERVAL
        self._lag_timer = loop.call_at(self._lag_due, self._measure_lag, loop)

    @property
    def watching(self) -> bool:
        """Whether the lag timer is running."""
        return self._lag_timer is not None

    def _measure_lag(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        if now - self._lag_due > self.max_loop_lag:
            self._late_beats += 1
        else:
            self._late_beats = 0
        self.lagging = self._late_beats >= LATE_BEATS
        if self._started_since_beat or self.in_flight or self.lagging:
            self._started_since_beat = False
            self._quiet_beats = 0
        else:
            self._quiet_beats += 1
            if self._quiet_beats >= IDLE_BEATS:
                self._lag_timer = None  # until the next request starts it
                return
        self._lag_due = now + LAG_INTERVAL
        self._lag_timer = loop.call_at(self._lag_due, self._measure_lag, loop)

    def started(self) -> None:
        self.in_flight += 1
        self._started_since_beat = True
        loop = self._lag_loop
        if self._lag_timer is None and loop is not None and not loop.is_closed():
            self.watch_loop(loop)

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
