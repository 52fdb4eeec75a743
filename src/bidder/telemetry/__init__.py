"""Telemetry: Prometheus metrics, CloudWatch EMF and structured logs."""

from bidder.telemetry.logging import JsonFormatter, SampledLog, Throttle, configure_logging
from bidder.telemetry.metrics import LATENCY_BUCKETS, OUTCOMES, STAGES, Metrics

__all__ = [
    "LATENCY_BUCKETS",
    "OUTCOMES",
    "STAGES",
    "JsonFormatter",
    "Metrics",
    "SampledLog",
    "Throttle",
    "configure_logging",
]
