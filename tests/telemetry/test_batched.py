"""Batched recording gives exactly what direct prometheus-client recording gives."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from bidder.telemetry.batched import BatchedCounter, BatchedHistogram, BatchedTally
from bidder.telemetry.distribution import LogBuckets
from bidder.telemetry.metrics import LATENCY_BUCKETS, LATENCY_FINE_BUCKETS


@pytest.mark.parametrize("fine", [None, LATENCY_FINE_BUCKETS], ids=["plain", "with-fine-buckets"])
def test_batched_histogram_and_counter_match_direct_recording(fine: LogBuckets | None) -> None:
    """Fine buckets kept for CloudWatch leave every Prometheus bucket exact."""
    values = [random.Random(1).expovariate(500) for _ in range(5000)]
    values += [*LATENCY_BUCKETS, 0.0, 10.0]  # on the bounds, below and above all of them
    direct, batched = CollectorRegistry(), CollectorRegistry()
    for registry, wrap in ((direct, False), (batched, True)):
        histogram = Histogram(
            "latency_seconds", "h", ["stage"], buckets=LATENCY_BUCKETS, registry=registry
        )
        counter = Counter("events", "c", registry=registry)
        child = histogram.labels("parse")
        observe = BatchedHistogram(child, fine) if wrap else child
        count = BatchedCounter(counter) if wrap else counter
        for index, value in enumerate(values):
            observe.observe(value)
            count.inc()
            if wrap and index % 1000 == 0:
                observe.flush()  # type: ignore[union-attr]
                count.flush()  # type: ignore[union-attr]
        if wrap:
            observe.flush()  # type: ignore[union-attr]
            count.flush()  # type: ignore[union-attr]

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {
            (sample.name, sample.labels.get("le", "")): sample.value
            for metric in registry.collect()
            for sample in metric.samples
        }

    expected, actual = samples(direct), samples(batched)
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        # Sums are added in a different order, so they agree to rounding, counts exactly.
        assert actual[key] == pytest.approx(value, rel=1e-12), key


def test_nothing_recorded_flushes_nothing() -> None:
    registry = CollectorRegistry()
    histogram = BatchedHistogram(Histogram("h_seconds", "h", registry=registry))
    histogram.flush()
    assert registry.get_sample_value("h_seconds_count") == 0


def test_fine_buckets_count_every_observation_once() -> None:
    registry = CollectorRegistry()
    histogram = BatchedHistogram(
        Histogram("f_seconds", "h", buckets=LATENCY_BUCKETS, registry=registry),
        LATENCY_FINE_BUCKETS,
    )
    values = [random.Random(2).expovariate(300) for _ in range(1000)]
    for value in values[:500]:
        histogram.observe(value)
    histogram.flush()
    for value in values[500:]:
        histogram.observe(value)
    histogram.flush()
    totals = histogram.distribution.totals
    assert sum(totals) == len(values)
    grid = histogram.distribution.grid
    for value in values[:20]:
        slot = grid.slot(value)
        assert grid.representatives[slot] == pytest.approx(
            value, rel=LATENCY_FINE_BUCKETS.max_relative_error
        )


def test_a_tally_counts_each_label_into_its_counter_at_flush() -> None:
    registry = CollectorRegistry()
    counter = Counter("answers", "c", ["outcome"], registry=registry)
    counters = {name: BatchedCounter(counter.labels(name)) for name in ("bid", "no_bid")}
    tally = BatchedTally(counters)
    labels = random.Random(2).choices(["bid", "no_bid"], weights=[1, 3], k=1000)
    for label in labels:
        tally.add(label)
    counters["bid"].inc(5)  # counted directly too, beside the tally
    tally.add("stray")  # not one of the counters' labels: left out, flushing goes on

    def value(name: str) -> float | None:
        return registry.get_sample_value("answers_total", {"outcome": name})

    assert value("bid") == 0, "nothing reaches the counters before a flush"
    tally.flush()
    for batched in counters.values():
        batched.flush()
    assert value("bid") == labels.count("bid") + 5
    assert value("no_bid") == labels.count("no_bid")
    tally.flush()
    for batched in counters.values():
        batched.flush()
    assert value("no_bid") == labels.count("no_bid"), "a flush counts each label once"
