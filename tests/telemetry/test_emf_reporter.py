"""The EMF reporter: what the bid path recorded, aggregated per interval into documents that
follow the specification, with exact counts and faithful latency distributions."""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from bidder.server import BidderApp
from bidder.settings import Settings
from bidder.telemetry import Metrics
from bidder.telemetry.emf import DIMENSION_SETS, EmfReporter, StdoutSink
from tests.conftest import LiveServer, free_port
from tests.server.test_bid_endpoint import banner_request, seed_settings
from tests.telemetry.agent import Agent
from tests.telemetry.emf_spec import (
    check_document,
    merged_distribution,
    percentile,
    raw_percentile,
)

NAMESPACE = "BidderTest"


def reporter(metrics: Metrics, stream: io.BytesIO, interval: float = 60.0) -> EmfReporter:
    sink = StdoutSink(
        stream,
        written=metrics.emf_documents.labels("written"),
        dropped=metrics.emf_documents.labels("dropped"),
        max_queued=100,
    )
    return EmfReporter(
        metrics,
        sink,
        namespace=NAMESPACE,
        service="bidder-test",
        endpoint_variant="AllTraffic",
        interval=interval,
    )


def documents(stream: io.BytesIO) -> list[dict[str, Any]]:
    return [check_document(line) for line in stream.getvalue().splitlines()]


def total(documents: list[dict[str, Any]], name: str) -> float:
    return sum(document.get(name, 0) for document in documents)


async def test_an_interval_becomes_valid_documents_with_exact_counts() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.set_model("sagemaker", "model-7", "spec-3")
    stream = io.BytesIO()
    subject = reporter(metrics, stream)
    subject.start()
    for _ in range(30):
        metrics.outcome["bid"].inc()
    for reason in ("deadline", "deadline_skip", "below_floor"):
        metrics.outcome["no_bid"].inc()
        metrics.no_bid_reason[reason].inc()
    metrics.rejected(400)
    metrics.outcome["error"].inc()
    metrics.shed.inc(2)
    metrics.model_call_succeeded("sagemaker", "AllTraffic", 0.004)
    metrics.model_call_failed("sagemaker", "timeout", "AllTraffic", 0.08)
    metrics.recorder_dropped(3)
    for rows in (1, 4, 4, 64):
        metrics.batch_size.observe(rows)
    metrics.flush()  # the periodic flush: collected into the open interval
    metrics.request_time.observe(0.002)
    await subject.close(grace=5)  # reports the last interval, flushing it first

    reported = documents(stream)
    assert len(reported) == 1
    [document] = reported
    [directive] = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    assert directive["Dimensions"] == [list(names) for names in DIMENSION_SETS]
    assert (document["Service"], document["ModelVersion"], document["EndpointVariant"]) == (
        "bidder-test",
        "model-7",
        "AllTraffic",
    )
    counts = {name: document[name] for name in ("Requests", "Bids", "NoBids", "Rejected")}
    assert counts == {"Requests": 35, "Bids": 30, "NoBids": 3, "Rejected": 1}
    assert document["Errors"] == 1
    assert document["Shed"] == 2
    assert document["DeadlineMisses"] == 2
    assert document["ModelCallFailures"] == 1
    assert document["RecorderDropped"] == 3
    assert document["BatchSize"]["Count"] == 4
    assert document["BatchSize"]["Min"] < 1.1
    assert 60 < document["BatchSize"]["Max"] < 68
    assert document["ModelCallLatency"]["Count"] == 2
    assert document["RequestLatency"]["Count"] == 1
    units = {metric["Name"]: metric["Unit"] for metric in directive["Metrics"]}
    assert units["RequestLatency"] == units["ModelCallLatency"] == "Milliseconds"
    assert units["Requests"] == units["BatchSize"] == "Count"


async def test_latency_distribution_keeps_the_percentiles_within_five_percent() -> None:
    metrics = Metrics(CollectorRegistry())
    stream = io.BytesIO()
    subject = reporter(metrics, stream)
    subject.start()
    generator = random.Random(5)
    # Bid-path latencies: mostly a millisecond or two, a long tail to tens of milliseconds.
    latencies = [generator.lognormvariate(-6.5, 1.3) for _ in range(50_000)]
    for latency in latencies:
        metrics.request_time.observe(latency)
    await subject.close(grace=5)

    reported = documents(stream)
    distribution = merged_distribution(reported, "RequestLatency")
    # More distinct values than one document may carry: spread over several, all valid.
    assert len(distribution) > 100
    assert len(reported) == -(-len(distribution) // 100)
    assert sum(distribution.values()) == len(latencies)
    assert total(reported, "Requests") == 0  # counts are in the first document only
    for fraction in (0.5, 0.9, 0.99):
        reported_ms = percentile(distribution, fraction)
        raw_ms = raw_percentile(latencies, fraction) * 1000
        assert abs(reported_ms - raw_ms) <= 0.05 * raw_ms, (fraction, reported_ms, raw_ms)


async def test_a_model_reload_mid_interval_reports_each_model_version_apart() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.set_model("embedded", "old", "spec")
    stream = io.BytesIO()
    subject = reporter(metrics, stream)
    subject.start()
    metrics.outcome["bid"].inc(5)
    metrics.flush()
    metrics.set_model("embedded", "new", "spec")
    metrics.outcome["bid"].inc(7)
    await subject.close(grace=5)

    by_version = {document["ModelVersion"]: document for document in documents(stream)}
    assert by_version["old"]["Bids"] == 5
    assert by_version["new"]["Bids"] == 7


async def test_the_bidder_reports_to_the_agent_once_per_interval(
    live_server: Callable[[Settings], LiveServer],
) -> None:
    agent = Agent(free_port())
    await agent.start()
    settings = seed_settings(
        emf_sink=f"tcp://127.0.0.1:{agent.port}",
        emf_interval_seconds=1,
        emf_namespace=NAMESPACE,
    )
    server = LiveServer(BidderApp(settings), free_port()).__enter__()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            for _ in range(40):
                answer = await client.post("/openrtb2/bid", json=banner_request())
                assert answer.status_code in (200, 204)
            for _ in range(3):
                answer = await client.post("/openrtb2/bid", json={"id": ""})
                assert answer.status_code == 400
        received: list[dict[str, Any]] = []
        for _ in range(100):  # at most 10 s: two or three intervals
            received = [check_document(line) for line in agent.lines]
            if total(received, "Requests") == 43:
                break
            await asyncio.sleep(0.1)
    finally:
        await asyncio.to_thread(server.__exit__)
        await agent.stop()
    assert total(received, "Requests") == 43
    assert total(received, "Rejected") == 3
    assert total(received, "Bids") + total(received, "NoBids") == 40
    assert sum(merged_distribution(received, "RequestLatency").values()) == 43
    # Documents per interval, not per request.
    assert len(received) < 43
    assert {document["Service"] for document in received} == {"bidder"}
