"""The latency histogram against numpy on random data, within its bucket precision."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bidder.traffic.histogram import Histogram

# A bucket is at most 1/128 of its lower bound wide and reports its midpoint; values are
# truncated to whole microseconds first.
RELATIVE = 1 / 128
ABSOLUTE = 1e-6

PERCENTILES = (0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0)


def histogram_of(samples: np.ndarray) -> Histogram:
    histogram = Histogram()
    for value in samples.tolist():
        histogram.record(value)
    return histogram


def assert_close(actual: float, expected: float) -> None:
    assert actual == pytest.approx(expected, rel=RELATIVE, abs=ABSOLUTE)


@pytest.mark.parametrize(
    "samples",
    [
        # Loopback-like latencies: a log-normal around half a millisecond with a long tail.
        np.random.default_rng(1).lognormal(mean=math.log(0.0005), sigma=0.8, size=50_000),
        # Spread over six decades, from microseconds to seconds.
        10 ** np.random.default_rng(2).uniform(-6, 0, size=50_000),
        # Below 256 µs buckets are exactly one microsecond wide.
        np.random.default_rng(3).uniform(0, 0.000256, size=20_000),
    ],
    ids=["lognormal", "log-uniform", "sub-256us"],
)
def test_percentiles_match_numpy_within_bucket_precision(samples: np.ndarray) -> None:
    histogram = histogram_of(samples)
    ordered = np.sort(samples)
    for percent in PERCENTILES:
        actual = histogram.percentile(percent)
        # numpy interpolates between neighbouring samples while the histogram returns the
        # sample at rank ceil(p*n): both must sit within the bucket of one of those two.
        rank = max(1, math.ceil(percent / 100 * len(ordered)))
        low, high = ordered[max(0, rank - 2)], ordered[rank - 1]
        assert low * (1 - RELATIVE) - ABSOLUTE <= actual <= high * (1 + RELATIVE) + ABSOLUTE
        assert_close(actual, float(np.percentile(samples, percent)))
    assert histogram.count == len(samples)
    assert histogram.max == float(samples.max())
    assert histogram.mean == pytest.approx(float(samples.mean()), rel=1e-9)


def test_merge_equals_recording_everything_in_one() -> None:
    rng = np.random.default_rng(4)
    first, second = rng.exponential(0.001, 10_000), rng.exponential(0.010, 5_000)
    merged = histogram_of(first)
    merged.merge(histogram_of(second))
    whole = histogram_of(np.concatenate([first, second]))
    assert merged.to_dict() == whole.to_dict()
    assert merged.count == 15_000
    assert merged.max == float(max(first.max(), second.max()))


def test_summary_is_in_milliseconds() -> None:
    histogram = Histogram()
    for _ in range(99):
        histogram.record(0.002)
    histogram.record(0.5)
    summary = histogram.to_dict()
    assert summary.keys() == {"p50", "p90", "p99", "p99.9", "max", "mean", "count"}
    assert_close(summary["p50"] / 1000, 0.002)  # type: ignore[operator]
    assert_close(summary["p99"] / 1000, 0.002)  # type: ignore[operator]
    assert summary["p99.9"] == summary["max"] == 500.0
    assert summary["mean"] == pytest.approx((99 * 2 + 500) / 100)
    assert summary["count"] == 100


def test_empty_histogram_has_no_percentiles() -> None:
    summary = Histogram().to_dict()
    assert summary["count"] == 0
    assert all(summary[name] is None for name in ("p50", "p99", "max", "mean"))


def test_out_of_range_values_are_clamped_but_max_stays_exact() -> None:
    histogram = Histogram()
    histogram.record(-0.001)
    histogram.record(3600.0)
    histogram.record(3600.0)
    assert histogram.percentile(0) == 0.5e-6
    assert histogram.percentile(50) == pytest.approx(60.0, rel=RELATIVE)
    assert histogram.percentile(100) == 3600.0
    with pytest.raises(ValueError, match="percentile"):
        histogram.percentile(100.5)
