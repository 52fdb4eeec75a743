"""Invokers: the HTTP clients `SageMakerScorer` can send `InvokeEndpoint` calls with.

`aiobotocore` is the reference client; `aiohttp` is the lean one (botocore's endpoint
resolution, serializer, credentials and SigV4 algorithm, a fraction of the per-call cost).
Both raise `InvocationFailed` with the same failure kinds for the same failures.
"""

from __future__ import annotations

from typing import Any

from bidder.scoring.invoke.aiohttp_client import AiohttpInvoker
from bidder.scoring.invoke.base import (
    ClientName,
    Invocation,
    InvocationFailed,
    Invoker,
    SageMakerEndpoint,
)
from bidder.scoring.invoke.botocore_client import AiobotocoreInvoker
from bidder.scoring.invoke.failures import FAILURE_KINDS


def make_invoker(endpoint: SageMakerEndpoint, connector_args: dict[str, Any] | None) -> Invoker:
    """The invoker `endpoint.client` names; `connector_args` go to its aiohttp connector."""
    if endpoint.client == "aiohttp":
        return AiohttpInvoker(endpoint, connector_args)
    return AiobotocoreInvoker(endpoint, connector_args)


__all__ = [
    "FAILURE_KINDS",
    "AiobotocoreInvoker",
    "AiohttpInvoker",
    "ClientName",
    "Invocation",
    "InvocationFailed",
    "Invoker",
    "SageMakerEndpoint",
    "make_invoker",
]
