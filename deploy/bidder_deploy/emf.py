"""The CloudWatch metrics the bidder writes as Embedded Metric Format lines.

With `BIDDER_EMF_SINK=stdout` each worker prints EMF records; the awslogs driver carries
them to the task's log group and CloudWatch turns them into metrics. The dashboard and the
alarms read these names: they are the contract between the bidder's EMF emitter and this
stack. All live in one namespace without dimensions, so CloudWatch sums them over workers
and tasks.
"""

from __future__ import annotations

from typing import Final

NAMESPACE: Final = "Bidder"

# Counts (unit Count), summed per period.
REQUESTS: Final = "Requests"  # bid requests received, shed ones included
BIDS: Final = "Bids"  # requests answered with a bid
DEADLINE_MISSES: Final = "DeadlineMisses"  # no-bids because the budget ran out
SHED: Final = "Shed"  # requests refused by admission control (load shedding)
MODEL_CALLS: Final = "ModelCalls"  # calls to the model (one per micro-batch)
MODEL_CALL_FAILURES: Final = "ModelCallFailures"  # failed model calls, any kind

# A distribution (unit Milliseconds): percentiles are read from it.
REQUEST_LATENCY: Final = "RequestLatency"  # arrival to answer, per bid request
