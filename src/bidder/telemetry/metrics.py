"""Every Prometheus metric the bidder exports, defined in one place.

Metrics live on a registry passed in, so each app (and each test) has its own. Label values
are fixed, low-cardinality sets; the children for them are resolved once here, so the bid
path records a value with one method call and no label look-up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
from collections.abc import Callable
from typing import Final, Literal, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from bidder import __version__
from bidder.decision.policy import NoBidReason
from bidder.telemetry.batched import BatchedCounter, BatchedGauge, BatchedHistogram, BatchedTally
from bidder.telemetry.distribution import Distribution, Grid, LogBuckets
from bidder.telemetry.process import SummedProcessMetrics
from bidder.telemetry.scrape import multiprocess_registry

# Dense from 0.1 ms to 100 ms: an exchange's whole budget is typically 100-300 ms, and the
# bidder's own share of it is a few milliseconds.
LATENCY_BUCKETS: Final = (
    0.0001,
    0.0002,
    0.0003,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.004,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
)
# Fine buckets behind the distributions reported to CloudWatch: 8 % apart, so every reported
# percentile is within 4 % of the raw one, from 10 us to 10 s.
LATENCY_FINE_BUCKETS: Final = LogBuckets(low=0.00001, high=10.0, ratio=1.08)
BATCH_ROWS_FINE_BUCKETS: Final = LogBuckets(low=1.0, high=8192.0, ratio=1.08)
# CPM prices: cents to the tens of dollars a display or video impression fetches.
PRICE_BUCKETS: Final = (
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
    50.0,
)
SCORE_BUCKETS: Final = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.03,
    *(round(0.05 * step, 2) for step in range(1, 20)),
)

# `*_created` series double the exposition for no use on counters that start with the process.
disable_created_metrics()  # type: ignore[no-untyped-call]

OUTCOMES: Final = ("bid", "no_bid", "invalid", "error")
STAGES: Final = ("parse", "features", "score", "decide")
# Request-level no-bid reasons besides the impression-level ones in `NoBidReason`.
REQUEST_NO_BID_REASONS: Final = (
    "not_ready",
    "deadline",
    "deadline_skip",
    "model_error",
    "circuit_open",
    "internal_error",
    "overload",
)


MODEL_RELOAD_OUTCOMES: Final = ("ok", "refused")
EMF_DOCUMENT_OUTCOMES: Final = ("written", "dropped")
RECORDER_OUTCOMES: Final = ("written", "dropped")

MULTIPROCESS_DIR_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"
# Seconds between the background flushes: a quarter of a second's values make each
# histogram's fold a fraction of a millisecond at the rates one worker takes.
FLUSH_INTERVAL: Final = 0.25

logger = logging.getLogger("bidder.telemetry")


class _Flushable(Protocol):
    def flush(self) -> None: ...


def multiprocess_dir() -> str | None:
    """Set (by `bidder serve --workers N`) when several workers share the metrics."""
    return os.environ.get(MULTIPROCESS_DIR_VARIABLE)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # Process CPU and memory: read at each scrape with one worker; with several, each
        # worker's copied at flush into metrics the scrape sums.
        self._flushed: list[_Flushable] = []
        if multiprocess_dir() is None:
            ProcessCollector(registry=registry)
        else:
            self._flushed.append(SummedProcessMetrics(registry))
        self.requests = Counter(
            "bidder_requests",
            "Bid requests answered, by outcome (bid, no_bid, invalid, error).",
            ["outcome"],
            registry=registry,
        )
        self.no_bids = Counter(
            "bidder_no_bids",
            "Requests answered with a no-bid, by the reason of their first impression.",
            ["reason"],
            registry=registry,
        )
        self.impressions = Counter(
            "bidder_impressions",
            "Impressions decided, by decision (bid or the no-bid reason).",
            ["decision"],
            registry=registry,
        )
        self.rejections = Counter(
            "bidder_rejected_requests",
            "Requests refused with a 4xx, by HTTP status.",
            ["status"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "bidder_request_duration_seconds",
            "Time from the bid request's arrival to the bidder's answer.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.stage_duration = Histogram(
            "bidder_stage_duration_seconds",
            "Time spent in each stage of the bid path.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.model_score = Histogram(
            "bidder_model_score",
            "Scores the model gave, one per impression.",
            buckets=SCORE_BUCKETS,
            registry=registry,
        )
        self.model_info = Gauge(
            "bidder_model_info",
            "The model being served (value 1), by scorer, version and feature spec.",
            ["scorer", "version", "feature_spec"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.model_call_duration = Histogram(
            "bidder_model_call_duration_seconds",
            "Time of each call to a remote model, by scorer, endpoint variant and outcome.",
            ["scorer", "variant", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.model_call_failures = Counter(
            "bidder_model_call_failures",
            "Failed calls to a remote model, by scorer and failure kind.",
            ["scorer", "kind"],
            registry=registry,
        )
        self.batch_rows = Histogram(
            "bidder_batch_rows",
            "Rows per model call made by the micro-batcher.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=registry,
        )
        self.batch_queue_wait = Histogram(
            "bidder_batch_queue_wait_seconds",
            "Time a request's rows waited in the micro-batcher before their model call.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.circuit_breaker_state = Gauge(
            "bidder_circuit_breaker_state",
            "State of the model endpoint's circuit breaker: 0 closed, 1 open, 2 half-open "
            "(with several workers, the worst worker's).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.ready = Gauge(
            "bidder_ready",
            "1 once the model is loaded and warmed up (with several workers, the number ready).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.in_flight_requests = Gauge(
            "bidder_in_flight_requests",
            "Bid requests being answered right now (with several workers, the sum).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.shed_requests = Counter(
            "bidder_shed_requests",
            "Bid requests refused by admission control because the bidder was at capacity.",
            registry=registry,
        )
        self.bid_prices = Histogram(
            "bidder_bid_price",
            "CPM price of each bid made, in the bid currency.",
            buckets=PRICE_BUCKETS,
            registry=registry,
        )
        self.build_info = Gauge(
            "bidder_build_info",
            "The running build (value 1), by bidder version and Python version.",
            ["version", "python"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.model_reloads = Counter(
            "bidder_model_reloads",
            "Model reloads, by outcome: ok, or refused (the old model kept serving).",
            ["outcome"],
            registry=registry,
        )
        self.emf_documents = Counter(
            "bidder_emf_documents",
            "CloudWatch EMF documents, by outcome: written to the sink, or dropped.",
            ["outcome"],
            registry=registry,
        )
        self.recorder_records = Counter(
            "bidder_recorder_records",
            "Requests offered to the traffic recorder, by outcome: written to a file, or "
            "dropped (its queue was full, or a write failed).",
            ["outcome"],
            registry=registry,
        )
        self.recorder_queue_depth_gauge = Gauge(
            "bidder_recorder_queue_depth",
            "Records waiting to be written by the traffic recorder (with several workers, "
            "the sum).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        for outcome in MODEL_RELOAD_OUTCOMES:
            self.model_reloads.labels(outcome)
        for outcome in EMF_DOCUMENT_OUTCOMES:
            self.emf_documents.labels(outcome)
        # The hot path records into batched stand-ins; `flush` folds them into the metrics.
        # Resolving every child here also makes each series exist at zero from the start,
        # so rates and alerts work before the first event of a kind.
        reasons = [*REQUEST_NO_BID_REASONS, *(reason.value for reason in NoBidReason)]
        decisions = ("bid", *(reason.value for reason in NoBidReason))
        self.outcome = {name: BatchedCounter(self.requests.labels(name)) for name in OUTCOMES}
        self.no_bid_reason = {name: BatchedCounter(self.no_bids.labels(name)) for name in reasons}
        self.imp_decision = {
            name: BatchedCounter(self.impressions.labels(name)) for name in decisions
        }
        # The bid path's per-request counts by label: a list append each (see BatchedTally).
        self.outcome_tally = BatchedTally(self.outcome)
        self.no_bid_tally = BatchedTally(self.no_bid_reason)
        self.imp_decision_tally = BatchedTally(self.imp_decision)
        self.stage = {name: BatchedHistogram(self.stage_duration.labels(name)) for name in STAGES}
        self.request_time = BatchedHistogram(self.request_duration, LATENCY_FINE_BUCKETS)
        self.score = BatchedHistogram(self.model_score)
        self.batch_size = BatchedHistogram(self.batch_rows, BATCH_ROWS_FINE_BUCKETS)
        self.batch_wait = BatchedHistogram(self.batch_queue_wait)
        # Follows admission control's count (`BidEndpoint`): read at flush, never per request.
        self.in_flight = BatchedGauge(self.in_flight_requests)
        self.shed = BatchedCounter(self.shed_requests)
        self.bid_price = BatchedHistogram(self.bid_prices)
        # The recorder may count from its writer thread, so these are the (locked) children
        # themselves; it counts per flushed batch, or per request only when it drops them.
        self._recorder_written = self.recorder_records.labels("written")
        self._recorder_dropped = self.recorder_records.labels("dropped")
        # `recorder_queue_depth.set(n)` is an attribute store, safe from any thread; the value
        # reaches /metrics at the next flush.
        self.recorder_queue_depth = BatchedGauge(self.recorder_queue_depth_gauge)
        # Remote model calls are recorded directly (their labels come from the response);
        # their fine distribution is kept beside them.
        self.model_call_time = Distribution(
            Grid([*LATENCY_BUCKETS, *LATENCY_FINE_BUCKETS.bounds()])
        )
        self._flush_listeners: list[Callable[[], None]] = []
        self.model_version = "none"  # until `set_model`
        self._flushed += [
            # Tallies first: they add to the counters flushed after them.
            self.outcome_tally,
            self.no_bid_tally,
            self.imp_decision_tally,
            *self.outcome.values(),
            *self.no_bid_reason.values(),
            *self.imp_decision.values(),
            *self.stage.values(),
            self.request_time,
            self.score,
            self.batch_size,
            self.batch_wait,
            self.in_flight,
            self.shed,
            self.bid_price,
            self.recorder_queue_depth,
        ]

    def flush(self) -> None:
        """Fold what the hot path recorded into the Prometheus metrics.

        Every part is flushed even when one fails, and the first failure is raised after:
        the hot path's histograms hold each value observed until their flush.
        """
        failure: Exception | None = None
        for flush in self._flush_steps():
            try:
                flush()
            except Exception as exc:  # the other parts must still drain
                failure = failure or exc
        if failure is not None:
            raise failure

    def _flush_steps(self) -> list[Callable[[], None]]:
        """The parts of a flush, in their order: a tally before the counters it counts
        into, the listeners last, when the metrics are up to date."""
        return [*(flushed.flush for flushed in self._flushed), *self._flush_listeners]

    def on_flush(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every flush, when the metrics are up to date (the
        CloudWatch reporter collects its interval's values there)."""
        self._flush_listeners.append(listener)

    def exposition(self) -> bytes:
        """The text format for `/metrics`: this process's registry, or with several workers
        the sum over all of them, read from the shared multiprocess directory."""
        self.flush()
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        return generate_latest(multiprocess_registry(directory))

    async def flush_periodically(self, interval: float = FLUSH_INTERVAL) -> None:
        """Flush every `interval` seconds for as long as the process serves, whatever one
        flush raises: without it the hot path's histogram values pile up, about 330 bytes
        per bid request (30 MiB per 100,000).

        Each part is flushed on a turn of the event loop of its own, so requests wait
        behind one histogram's fold at most, never behind a whole flush: folded at once,
        a second's values at 5,000-10,000 requests a second held the loop for 8-30 ms, and
        the requests queued behind it were most of the bidder's p99 at half load."""
        while True:
            await asyncio.sleep(interval)
            for flush in self._flush_steps():
                try:
                    flush()
                except Exception:
                    logger.exception("metrics flush failed")
                await asyncio.sleep(0)

    def process_exited(self) -> None:
        self.flush()
        if multiprocess_dir() is not None:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def rejected(self, status: int) -> None:
        self.rejections.labels(str(status)).inc()
        self.outcome["invalid"].inc()

    def model_call_succeeded(self, scorer: str, variant: str, elapsed: float) -> None:
        self.model_call_duration.labels(scorer, variant, "ok").observe(elapsed)
        self.model_call_time.observe(elapsed)

    def model_call_failed(
        self, scorer: str, kind: str, variant: str = "", elapsed: float | None = None
    ) -> None:
        self.model_call_failures.labels(scorer, kind).inc()
        if elapsed is not None:
            self.model_call_duration.labels(scorer, variant, kind).observe(elapsed)
            self.model_call_time.observe(elapsed)

    def set_model(self, scorer: str, version: str, feature_spec: str) -> None:
        self.model_info.clear()
        self.model_info.labels(scorer, version, feature_spec).set(1)
        self.model_version = version

    def model_reloaded(self, outcome: Literal["ok", "refused"]) -> None:
        self.model_reloads.labels(outcome).inc()

    def recorder_written(self, records: int = 1) -> None:
        """`records` requests reached the recorder's files (safe from any thread)."""
        self._recorder_written.inc(records)

    def recorder_dropped(self, records: int = 1) -> None:
        """`records` requests could not be recorded: queue full, or a write failed (safe
        from any thread)."""
        self._recorder_dropped.inc(records)
