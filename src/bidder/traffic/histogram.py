"""A log-linear latency histogram in the spirit of HdrHistogram.

Values are recorded in whole microseconds into buckets whose width is at most 1/128 of
their lower bound; a percentile is reported as its bucket's midpoint, so it is exact to
0.4 % (two significant digits with room to spare) from 1 µs to a minute, in 2,560
counters whatever the number of samples. Recording is a few integer operations into a
preallocated list, cheap enough to run for every response of a load test without becoming
the thing measured.

Bucket index of a value `v`: with `shift = max(0, v.bit_length() - 8)` the top 8 bits of
`v` are `v >> shift`, which is below 256 and at least 128 once `shift > 0`; the index
`(shift << 7) + (v >> shift)` is then contiguous across octaves, values below 256 µs
landing in buckets of exactly 1 µs.
"""

from __future__ import annotations

import math

_SUB_BITS = 8
_HALF = 1 << (_SUB_BITS - 1)
MAX_MICROSECONDS = 60_000_000
_MAX_SHIFT = max(0, MAX_MICROSECONDS.bit_length() - _SUB_BITS)
BUCKETS = ((_MAX_SHIFT + 1) << (_SUB_BITS - 1)) + _HALF
SUMMARY_PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))

Summary = dict[str, float | int | None]


def _midpoint(index: int) -> float:
    """The middle of a bucket's range of microseconds (values were truncated into it)."""
    if index < 1 << _SUB_BITS:
        return index + 0.5
    shift = (index >> (_SUB_BITS - 1)) - 1
    mantissa = index - (shift << (_SUB_BITS - 1))
    return (mantissa << shift) + (1 << shift) / 2


class Histogram:
    """Latencies in seconds; `record` clamps anything above a minute into the top bucket."""

    __slots__ = ("_counts", "_max", "_total", "count")

    def __init__(self) -> None:
        self._counts = [0] * BUCKETS
        self._total = 0.0
        self._max = 0.0
        self.count = 0

    def record(self, seconds: float) -> None:
        microseconds = int(seconds * 1_000_000)
        if microseconds < 0:
            microseconds = 0
        elif microseconds > MAX_MICROSECONDS:
            microseconds = MAX_MICROSECONDS
        shift = microseconds.bit_length() - _SUB_BITS
        if shift <= 0:
            self._counts[microseconds] += 1
        else:
            self._counts[(shift << (_SUB_BITS - 1)) + (microseconds >> shift)] += 1
        self.count += 1
        self._total += seconds
        if seconds > self._max:
            self._max = seconds

    def merge(self, other: Histogram) -> None:
        self._counts = [a + b for a, b in zip(self._counts, other._counts, strict=True)]
        self.count += other.count
        self._total += other._total
        self._max = max(self._max, other._max)

    @property
    def max(self) -> float:
        return self._max

    @property
    def mean(self) -> float:
        return self._total / self.count if self.count else math.nan

    def buckets(self) -> list[tuple[float, int]]:
        """`(value, count)` of every non-empty bucket in increasing order, the value being
        the bucket's midpoint in seconds: the whole distribution, e.g. to draw it."""
        return [(_midpoint(i) / 1_000_000, n) for i, n in enumerate(self._counts) if n]

    def percentile(self, percent: float) -> float:
        """The value below which `percent` % of the samples fall, in seconds (NaN if empty)."""
        if not 0.0 <= percent <= 100.0:
            raise ValueError(f"percentile must be within [0, 100], got {percent}")
        if not self.count:
            return math.nan
        rank = max(1, math.ceil(percent / 100.0 * self.count))
        if rank >= self.count:
            return self._max
        seen = 0
        for index, bucket_count in enumerate(self._counts):
            seen += bucket_count
            if seen >= rank:
                # The exact maximum beats a bucket midpoint above it.
                return min(_midpoint(index) / 1_000_000, self._max)
        return self._max

    def to_dict(self) -> Summary:
        """Percentiles, max and mean in milliseconds (None when empty), and the count."""
        summary: Summary = {}
        for name, percent in SUMMARY_PERCENTILES:
            summary[name] = _milliseconds(self.percentile(percent))
        summary["max"] = _milliseconds(self._max if self.count else math.nan)
        summary["mean"] = _milliseconds(self.mean)
        summary["count"] = self.count
        return summary


def _milliseconds(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000, 4)
