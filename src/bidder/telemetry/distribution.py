"""Fine log-spaced buckets that stand for raw values in a reported distribution.

CloudWatch takes a distribution as `Values` and `Counts`: each distinct value once, with
how often it occurred. Reporting every raw latency would give as many values as requests;
rounding each value to the geometric middle of a log-spaced bucket keeps the number of
distinct values small while every percentile stays within `sqrt(ratio) - 1` of the truth
(the k-th smallest rounded value is the rounding of the k-th smallest raw value).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LogBuckets:
    """Bounds `low, low·ratio, low·ratio², …` up to the first at or above `high`.

    Values below `low` are counted at `low` and values above the last bound at the last
    bound: the range should cover every value that matters.
    """

    low: float
    high: float
    ratio: float

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high or self.ratio <= 1:
            raise ValueError("LogBuckets needs 0 < low < high and ratio > 1")

    @property
    def max_relative_error(self) -> float:
        return math.sqrt(self.ratio) - 1

    def bounds(self) -> list[float]:
        steps = math.ceil(math.log(self.high / self.low) / math.log(self.ratio))
        return [self.low * self.ratio**step for step in range(steps + 1)]


class Grid:
    """Ascending upper bounds (`le` buckets, the last one +Inf) and, per bucket, the value
    that represents it: the geometric middle of its bounds, or the nearest finite bound for
    the two open-ended buckets."""

    __slots__ = ("bounds", "representatives")

    def __init__(self, finite_bounds: Iterable[float]) -> None:
        finite = sorted(set(finite_bounds))
        if not finite or finite[0] <= 0:
            raise ValueError("a grid needs positive bounds")
        self.bounds: list[float] = [*finite, math.inf]
        lowers = [finite[0], *finite]
        uppers = [*finite, finite[-1]]
        self.representatives: list[float] = [
            math.sqrt(lower * upper) for lower, upper in zip(lowers, uppers, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.bounds)

    def slot(self, value: float) -> int:
        return bisect_left(self.bounds, value)


class Distribution:
    """Cumulative counts per bucket of a `Grid`, for whoever reports intervals to diff.

    Counts only ever grow, like a Prometheus counter: a reader keeps the previous snapshot
    and takes the difference, so that several readers never disturb each other.
    """

    __slots__ = ("_bounds", "grid", "totals")

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self._bounds = grid.bounds
        self.totals = [0] * len(grid)

    def observe(self, value: float) -> None:
        self.totals[bisect_left(self._bounds, value)] += 1

    def add(self, counts: Sequence[int]) -> None:
        totals = self.totals
        for index, count in enumerate(counts):
            if count:
                totals[index] += count
