"""The CloudWatch metrics the bidder writes in the Embedded Metric Format (EMF).

With `BIDDER_EMF_SINK=stdout` each worker prints one EMF document per interval; the awslogs
driver carries it to the task's log group and CloudWatch turns it into metrics. The names
below are the contract between the bidder's EMF reporter (`bidder.telemetry.emf`) and this
stack's dashboard and alarms. Every document is published under two dimension sets; the
stack reads only `[Service]`, which CloudWatch sums over workers, tasks and model versions.
"""

from __future__ import annotations

from typing import Final

NAMESPACE: Final = "Bidder"
SERVICE_DIMENSION: Final = "Service"
# The stack sets BIDDER_EMF_NAMESPACE and BIDDER_EMF_SERVICE to these, so the task's
# metrics and the dashboard's queries cannot drift apart.
SERVICE: Final = "bidder"

# Counts (unit Count), sums per interval.
REQUESTS: Final = "Requests"  # bid requests received, shed ones included
BIDS: Final = "Bids"  # requests answered with a bid
NO_BIDS: Final = "NoBids"  # requests answered with a no-bid, whatever the reason
REJECTED: Final = "Rejected"  # invalid requests (4xx)
ERRORS: Final = "Errors"  # internal failures, answered with a no-bid
SHED: Final = "Shed"  # requests refused by admission control (load shedding)
DEADLINE_MISSES: Final = "DeadlineMisses"  # no-bids because the budget ran out
MODEL_CALL_FAILURES: Final = "ModelCallFailures"  # failed model calls, an open breaker's too
RECORDER_DROPPED: Final = "RecorderDropped"  # records the traffic recorder could not keep

# Distributions: percentiles are read from them, their SampleCount counts the events.
REQUEST_LATENCY: Final = "RequestLatency"  # Milliseconds, arrival to answer, per request
MODEL_CALL_LATENCY: Final = "ModelCallLatency"  # Milliseconds, per model call (one per batch)
BATCH_SIZE: Final = "BatchSize"  # Count, feature rows per model call
