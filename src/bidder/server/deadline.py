"""Each request's time budget, and the estimate of what a model call costs.

An exchange's `tmax` covers the whole round trip; the bidder keeps `network_allowance` of
it for the network and the exchange's own handling, and never plans beyond `ceiling` even
when `tmax` is generous. A request without `tmax` gets `default`. A late answer is worth
nothing, so the bid path answers a no-bid at the budget instead of a bid after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    """Times in seconds."""

    network_allowance: float
    ceiling: float
    default: float

    def budget(self, tmax_ms: int | None) -> float:
        if tmax_ms is None:
            return min(self.default, self.ceiling)
        return max(0.0, min(tmax_ms / 1000 - self.network_allowance, self.ceiling))


@dataclass(slots=True)
class ModelTimeEstimate:
    """A moving average of recent model-call durations, never below `floor`: a request whose
    remaining budget is smaller skips the call rather than start what it cannot finish."""

    floor: float
    smoothing: float = 0.05
    average: float = field(init=False, default=0.0)

    def observe(self, seconds: float) -> None:
        self.average += self.smoothing * (seconds - self.average)

    @property
    def expected(self) -> float:
        return max(self.floor, self.average)
