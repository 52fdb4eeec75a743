"""A circuit breaker: stop calling an endpoint that keeps failing, and probe until it heals.

Closed: calls go through; `failure_threshold` consecutive failures open it. Open: calls are
refused at once (the bid request gets a no-bid without paying for a doomed call) until
`probe_interval` has passed. Half-open: exactly one call, the probe, goes through; its
success closes the breaker, its failure opens it for another interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import IntEnum


class BreakerState(IntEnum):
    """Values as exported in `bidder_circuit_breaker_state`."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int,
        probe_interval: float,
        on_change: Callable[[BreakerState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.probe_interval = probe_interval
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._on_change = on_change
        self._clock = clock

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open state only the probe may."""
        if self.state is BreakerState.CLOSED:
            return True
        if (
            self.state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.probe_interval
        ):
            self._set(BreakerState.HALF_OPEN)
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        if self.state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        self.state = state
        if self._on_change is not None:
            self._on_change(state)
