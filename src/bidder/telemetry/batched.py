"""Cheap recording on the hot path, folded into Prometheus metrics in bulk.

A prometheus-client `Histogram.observe` takes a lock, walks the buckets and increments
twice, about a microsecond; the bid path records eight or more values per request. These
wrappers keep plain lists instead (the event loop is single-threaded, so no lock is
needed): a histogram the observed values, a counter its pending count. `flush` bins the
values with numpy and adds the accumulated counts to the real metric children, one
increment per touched bucket. `/metrics` flushes before it renders, and a background task flushes
every quarter of a second, a part at a time (`Metrics.flush_periodically`), so that other
workers' values reach the shared multiprocess files promptly and no flush holds the event loop
for long.

A histogram may also keep fine log-spaced counts for a reported distribution (CloudWatch
EMF): its buckets are then the union of the Prometheus bounds and the fine ones, so one
search per value serves both, and each Prometheus bucket stays exact.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from bidder.telemetry.distribution import Distribution, Grid, LogBuckets


class BatchedHistogram:
    """Stands for one histogram child (`Histogram` or `Histogram.labels(...)`).

    With `fine` buckets, `distribution` holds the cumulative fine counts, updated at
    each `flush`.
    """

    __slots__ = (
        "_bounds",
        "_child",
        "_distribution",
        "_prometheus_slot",
        "_search_bounds",
        "_values",
        "observe",
    )

    def __init__(self, child: Any, fine: LogBuckets | None = None) -> None:
        self._child = child
        prometheus_bounds: list[float] = list(child._upper_bounds)
        self._distribution: Distribution | None = None
        if fine is None:
            self._bounds = prometheus_bounds
            self._prometheus_slot = list(range(len(prometheus_bounds)))
        else:
            grid = Grid([*prometheus_bounds[:-1], *fine.bounds()])
            self._distribution = Distribution(grid)
            self._bounds = grid.bounds
            # Every Prometheus bound is a grid bound, so a grid bucket lies in exactly one
            # Prometheus bucket: the first whose bound is at or above the grid bucket's.
            self._prometheus_slot = [bisect_left(prometheus_bounds, bound) for bound in grid.bounds]
        self._search_bounds = np.asarray(self._bounds, dtype=np.float64)
        # Observing is appending to a list: a C call, no Python frame (about 10 ns instead
        # of 100 ns for a bisection in a method); `flush` bins the values with numpy. The
        # list holds what one flush interval observed.
        self._values: list[float] = []
        self.observe: Callable[[float], None] = self._values.append

    @property
    def distribution(self) -> Distribution:
        """The cumulative fine counts, for a histogram built with `fine` buckets."""
        if self._distribution is None:
            raise ValueError("this histogram keeps no fine buckets")
        return self._distribution

    def flush(self) -> None:
        values = self._values
        if not values:
            return
        # `le` buckets: the first bound at or above the value; +Inf is the last bound, and
        # where a NaN goes too (numpy sorts NaN after +Inf).
        slots = np.searchsorted(self._search_bounds, values, side="left")
        np.minimum(slots, len(self._bounds) - 1, out=slots)
        counts: list[int] = np.bincount(slots, minlength=len(self._bounds)).tolist()
        total = sum(values)
        values.clear()
        if self._distribution is not None:
            self._distribution.add(counts)
        buckets = self._child._buckets
        per_bucket = [0] * len(buckets)
        for slot, count in enumerate(counts):
            if count:
                per_bucket[self._prometheus_slot[slot]] += count
        for index, count in enumerate(per_bucket):
            if count:
                buckets[index].inc(count)
        self._child._sum.inc(total)


class BatchedCounter:
    """Stands for one counter child."""

    __slots__ = ("_child", "_pending")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._pending = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self._pending += amount

    def flush(self) -> None:
        if self._pending:
            self._child.inc(self._pending)
            self._pending = 0.0


class BatchedTally:
    """Counts events by label into a set of counters, one per label (`BatchedCounter`s).

    `add(label)` appends the label to a list, a C call of about 30 ns where looking a
    counter up and calling its `inc` is a dictionary access and a Python call, about
    150 ns; the bid path counts two or three labelled events per request. `flush`
    counts the labels and adds each total to its counter, which must be flushed after.
    """

    __slots__ = ("_counters", "_labels", "add")

    def __init__(self, counters: Mapping[str, BatchedCounter]) -> None:
        self._counters = counters
        self._labels: list[str] = []
        self.add: Callable[[str], None] = self._labels.append

    def flush(self) -> None:
        if not self._labels:
            return
        totals = Counter(self._labels)
        self._labels.clear()
        for label, total in totals.items():
            # The labels come from fixed sets; a stray one (a bug) must not stop flushing.
            counter = self._counters.get(label)
            if counter is not None:
                counter.inc(total)


class BatchedGauge:
    """Stands for one gauge child: the last value given to `set`, or the value of the
    function given to `follow` (requests in flight, kept by admission control), reaches the
    child at `flush`, so that setting it costs an attribute store and following it nothing."""

    __slots__ = ("_child", "_flushed", "_read", "value")

    def __init__(self, child: Any) -> None:
        self._child = child
        self.value = 0.0
        self._flushed = 0.0
        self._read: Callable[[], float] | None = None

    def set(self, value: float) -> None:
        self.value = value

    def follow(self, read: Callable[[], float]) -> None:
        """Take the value from `read` at each flush instead."""
        self._read = read

    def flush(self) -> None:
        if self._read is not None:
            self.value = self._read()
        if self.value != self._flushed:
            self._child.set(self.value)
            self._flushed = self.value
