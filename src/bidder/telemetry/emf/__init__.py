"""CloudWatch metrics in the embedded metric format (EMF), aggregated per interval."""

from __future__ import annotations

from bidder.settings import Settings
from bidder.telemetry.emf.documents import Directive, Interval, render
from bidder.telemetry.emf.reporter import COUNTS, DIMENSION_SETS, EmfReporter
from bidder.telemetry.emf.sinks import Sink, StdoutSink, TcpSink, parse_tcp_address
from bidder.telemetry.metrics import Metrics

__all__ = [
    "COUNTS",
    "DIMENSION_SETS",
    "Directive",
    "EmfReporter",
    "Interval",
    "Sink",
    "StdoutSink",
    "TcpSink",
    "create_reporter",
    "open_sink",
    "render",
]


def open_sink(settings: Settings, metrics: Metrics) -> Sink | None:
    """The sink `BIDDER_EMF_SINK` names, or None when it is `off`."""
    if settings.emf_sink == "off":
        return None
    written = metrics.emf_documents.labels("written")
    dropped = metrics.emf_documents.labels("dropped")
    queued = settings.emf_max_queued_documents
    if settings.emf_sink == "stdout":
        return StdoutSink(written=written, dropped=dropped, max_queued=queued)
    host, port = parse_tcp_address(settings.emf_sink)
    return TcpSink(
        host,
        port,
        timeout=settings.emf_tcp_timeout_ms / 1000,
        written=written,
        dropped=dropped,
        max_queued=queued,
    )


def create_reporter(settings: Settings, metrics: Metrics) -> EmfReporter | None:
    """The reporter the settings ask for (not started), or None with EMF off."""
    sink = open_sink(settings, metrics)
    if sink is None:
        return None
    if settings.scorer == "embedded":
        variant = "embedded"
    else:
        # Without a target variant, SageMaker spreads calls over the variants by weight.
        variant = settings.sagemaker_target_variant or "default"
    return EmfReporter(
        metrics,
        sink,
        namespace=settings.emf_namespace,
        service=settings.emf_service,
        endpoint_variant=variant,
        interval=settings.emf_interval_seconds,
    )
