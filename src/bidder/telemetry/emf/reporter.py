"""CloudWatch metrics per interval, aggregated in process from what Prometheus already has.

The bid path records nothing extra for CloudWatch. At every `Metrics.flush` (each second,
and before each scrape) the reporter takes the growth of a few Prometheus counters and of
the fine distributions kept beside the latency and batch-size histograms, and adds it to
the open interval of the current dimension values (a model reload switches them). At each
interval boundary, aligned to the wall clock so that a 60 s interval is one CloudWatch
minute, it renders the documents and hands them to the sink; on shutdown it does so for
the last, partial interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from bidder.telemetry.distribution import Distribution
from bidder.telemetry.emf.documents import Directive, Interval, render, significant
from bidder.telemetry.emf.sinks import Sink
from bidder.telemetry.metrics import Metrics

SERVICE: Final = "Service"
MODEL_VERSION: Final = "ModelVersion"
ENDPOINT_VARIANT: Final = "EndpointVariant"
DIMENSION_SETS: Final = ((SERVICE,), (SERVICE, MODEL_VERSION, ENDPOINT_VARIANT))


@dataclass(frozen=True)
class CountSource:
    """A CloudWatch count: the sum of a Prometheus sample over the label values given
    (all of them when `label` is None)."""

    name: str
    sample: str
    label: str | None = None
    values: tuple[str, ...] = ()

    def matches(self, sample: str, labels: Mapping[str, str]) -> bool:
        return sample == self.sample and (self.label is None or labels[self.label] in self.values)


COUNTS: Final = (
    CountSource("Requests", "bidder_requests_total"),
    CountSource("Bids", "bidder_requests_total", "outcome", ("bid",)),
    CountSource("NoBids", "bidder_requests_total", "outcome", ("no_bid",)),
    CountSource("Rejected", "bidder_requests_total", "outcome", ("invalid",)),
    CountSource("Errors", "bidder_requests_total", "outcome", ("error",)),
    CountSource("Shed", "bidder_shed_requests_total"),
    CountSource("DeadlineMisses", "bidder_no_bids_total", "reason", ("deadline", "deadline_skip")),
    CountSource("ModelCallFailures", "bidder_model_call_failures_total"),
    # Recorded by the traffic recorder, when there is one; zero otherwise.
    CountSource("RecorderDropped", "bidder_recorder_records_total", "outcome", ("dropped",)),
)


@dataclass(frozen=True)
class DistributionSource:
    name: str
    unit: str
    # From the recorded unit to the reported one (seconds to milliseconds).
    scale: float
    distribution: Distribution


class EmfReporter:
    def __init__(
        self,
        metrics: Metrics,
        sink: Sink,
        *,
        namespace: str,
        service: str,
        endpoint_variant: str,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._metrics = metrics
        self._sink = sink
        self._directive = Directive(namespace, DIMENSION_SETS)
        self._service = service
        self._endpoint_variant = endpoint_variant
        self._interval = interval
        self._clock = clock
        self._counted = metrics.registry.restricted_registry({s.sample for s in COUNTS})
        self._distributions = [
            DistributionSource(
                "RequestLatency", "Milliseconds", 1000.0, metrics.request_time.distribution
            ),
            DistributionSource("ModelCallLatency", "Milliseconds", 1000.0, metrics.model_call_time),
            DistributionSource("BatchSize", "Count", 1.0, metrics.batch_size.distribution),
        ]
        self._last_counts = self._read_counts()
        self._last_totals = {s.name: list(s.distribution.totals) for s in self._distributions}
        self._open: dict[tuple[str, ...], Interval] = {}
        self._opened_at = clock()
        self._task: asyncio.Task[None] | None = None
        metrics.on_flush(self.collect)

    def start(self) -> None:
        self._sink.start()
        self._task = asyncio.create_task(self._run())

    async def close(self, grace: float) -> None:
        """Report the last interval and deliver what is queued, within `grace` seconds."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.emit()
        await self._sink.close(grace)

    def collect(self) -> None:
        """Add what was recorded since the last call to the open interval."""
        dimensions = {
            SERVICE: self._service,
            MODEL_VERSION: self._metrics.model_version,
            ENDPOINT_VARIANT: self._endpoint_variant,
        }
        key = tuple(dimensions.values())
        interval = self._open.get(key)
        if interval is None:
            interval = self._open[key] = Interval(dimensions)
        counts = self._read_counts()
        for source in COUNTS:
            interval.add_count(
                source.name, "Count", counts[source.name] - self._last_counts[source.name]
            )
        self._last_counts = counts
        for distribution in self._distributions:
            self._collect_values(interval, distribution)

    def _collect_values(self, interval: Interval, source: DistributionSource) -> None:
        totals, last = source.distribution.totals, self._last_totals[source.name]
        if totals == last:
            return
        representatives = source.distribution.grid.representatives
        values: dict[float, int] = {}
        for slot, (total, previous) in enumerate(zip(totals, last, strict=True)):
            if total != previous:
                value = significant(representatives[slot] * source.scale)
                values[value] = values.get(value, 0) + total - previous
        interval.add_values(source.name, source.unit, values)
        self._last_totals[source.name] = list(totals)

    def emit(self) -> None:
        """Close the open interval: render its documents and queue them on the sink."""
        self._metrics.flush()  # collects, through the flush listener
        timestamp_ms = int(self._opened_at * 1000)
        for interval in self._open.values():
            for document in render(self._directive, interval, timestamp_ms):
                self._sink.offer(document)
        self._open = {}
        self._opened_at = self._clock()

    async def _run(self) -> None:
        boundary = (math.floor(self._clock() / self._interval) + 1) * self._interval
        while True:
            await asyncio.sleep(max(0.0, boundary - self._clock()))
            self.emit()
            self._opened_at = boundary
            boundary += self._interval
            now = self._clock()
            if boundary <= now:  # the loop was held up past a whole interval
                boundary = (math.floor(now / self._interval) + 1) * self._interval

    def _read_counts(self) -> dict[str, float]:
        counts = dict.fromkeys((source.name for source in COUNTS), 0.0)
        for family in self._counted.collect():
            for sample in family.samples:
                for source in COUNTS:
                    if source.matches(sample.name, sample.labels):
                        counts[source.name] += sample.value
        return counts
