"""The periodic flush keeps draining the hot path's batched values when a part of it fails.

The bid path's histograms keep every observed value until a flush, so a flush that stopped
for good would grow a worker by about 330 bytes per request (the memory soak saw it).
"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from bidder.telemetry import Metrics


def broken_reading() -> float:
    raise RuntimeError("the in-flight count cannot be read")


def test_a_failing_part_is_raised_after_every_other_part_drained() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    # The in-flight gauge is flushed before the bid prices: its failure must not keep them.
    metrics.in_flight.follow(broken_reading)
    metrics.bid_price.observe(1.5)
    metrics.request_time.observe(0.002)
    with pytest.raises(RuntimeError, match="in-flight count"):
        metrics.flush()
    assert registry.get_sample_value("bidder_bid_price_count") == 1
    assert registry.get_sample_value("bidder_request_duration_seconds_count") == 1


async def test_the_periodic_flush_outlives_failing_flushes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    failures = 0

    def broken_listener() -> None:
        nonlocal failures
        failures += 1
        raise RuntimeError("listener failed")

    metrics.on_flush(broken_listener)
    flushing = asyncio.create_task(metrics.flush_periodically(interval=0.01))
    try:
        for expected in (1.0, 2.0, 3.0):
            metrics.request_time.observe(0.002)
            seen = failures
            for _ in range(500):  # at most 5 s on a busy machine
                await asyncio.sleep(0.01)
                if failures > seen:
                    break
            count = registry.get_sample_value("bidder_request_duration_seconds_count")
            assert count == expected
        assert not flushing.done()
    finally:
        flushing.cancel()
    assert "metrics flush failed" in caplog.text


async def test_the_periodic_flush_lets_requests_in_between_its_parts() -> None:
    """A flush folds a whole interval's values: done at once it held the event loop for
    milliseconds, and every request that arrived meanwhile waited."""
    metrics = Metrics(CollectorRegistry())
    loop = asyncio.get_running_loop()
    events: list[str] = []
    done = asyncio.Event()

    def first() -> None:
        events.append("first part")
        loop.call_soon(events.append, "a request's turn")

    def second() -> None:
        events.append("second part")
        done.set()

    metrics.on_flush(first)
    metrics.on_flush(second)
    flushing = asyncio.create_task(metrics.flush_periodically(interval=0.01))
    try:
        await asyncio.wait_for(done.wait(), timeout=5)
    finally:
        flushing.cancel()
    assert events[:3] == ["first part", "a request's turn", "second part"]
