"""Scoring through an Amazon SageMaker real-time endpoint with aiobotocore.

One `sagemaker-runtime` client per process, opened at start-up and closed at shutdown, with
its connection pool sized for the expected concurrency. Its retries are off: a retry cannot
fit in an RTB deadline, and a failing call costs a no-bid, not a 5xx. botocore's connect and
read timeouts do not cover the wait for a free pooled connection, so every invocation also
runs under an overall timeout. Each failure kind is told apart for the metrics, and a
circuit breaker stops calls to an endpoint that keeps failing.

Credentials come from the standard AWS chain (environment, profile, container or instance
role); the bidder's settings never hold them.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiohttp
import numpy as np
import numpy.typing as npt
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoRegionError,
    ReadTimeoutError,
)

from bidder.errors import ConfigurationError, ScoringError
from bidder.scoring.base import Scores
from bidder.scoring.breaker import CircuitBreaker
from bidder.scoring.payloads import PayloadError, decode_scores, encode_rows, media_type
from bidder.telemetry.metrics import Metrics

# Every failure kind a call can end in; each is a label value of the model-call metrics.
FAILURE_KINDS: Final = (
    "model_error",
    "validation_error",
    "throttled",
    "service_unavailable",
    "internal_failure",
    "client_error",
    "connect_timeout",
    "read_timeout",
    "timeout",
    "connection_reset",
    "connection_refused",
    "dns_failure",
    "bad_response",
    "circuit_open",
)

_ERROR_CODES: Final = {
    "ModelError": "model_error",
    "ValidationError": "validation_error",
    "ThrottlingException": "throttled",
    "Throttling": "throttled",
    "ModelNotReadyException": "throttled",
    "ServiceUnavailable": "service_unavailable",
    "InternalFailure": "internal_failure",
}
_STATUS_KINDS: Final = {
    424: "model_error",
    400: "validation_error",
    429: "throttled",
    503: "service_unavailable",
    500: "internal_failure",
}


@dataclass(frozen=True)
class SageMakerEndpoint:
    """Where and how to invoke; timeouts in seconds."""

    endpoint_name: str
    region: str | None = None
    endpoint_url: str | None = None
    content_type: Literal["text/csv", "application/json"] = "text/csv"
    connect_timeout: float = 0.05
    read_timeout: float = 0.05
    invoke_timeout: float = 0.08
    max_pool_connections: int = 64
    target_variant: str | None = None
    target_model: str | None = None
    custom_attributes: str | None = None
    # Send a unique InferenceId with every invocation, for SageMaker data capture to key on.
    inference_ids: bool = False


class SageMakerScorer:
    kind = "sagemaker"

    def __init__(
        self,
        endpoint: SageMakerEndpoint,
        *,
        num_features: int,
        breaker: CircuitBreaker,
        metrics: Metrics,
        connector_args: dict[str, Any] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._num_features = num_features
        self.breaker = breaker
        self.metrics = metrics
        self._client: Any = None
        self._stack = AsyncExitStack()
        self._static_arguments = _invoke_arguments(endpoint)
        # Extra aiohttp connector options (a custom DNS resolver, for instance).
        self._connector_args = connector_args or {}
        # Unique across processes and restarts without a UUID per call.
        self._id_prefix = secrets.token_hex(6)
        self._invocations = 0

    def _next_inference_id(self) -> str:
        self._invocations += 1
        return f"{self._id_prefix}-{self._invocations}"

    @property
    def model_version(self) -> str:
        variant = self.endpoint.target_variant or "default"
        return f"{self.endpoint.endpoint_name}/{variant}"

    @property
    def num_features(self) -> int:
        return self._num_features

    async def start(self) -> None:
        """Open the one client of this process."""
        config = AioConfig(
            connect_timeout=self.endpoint.connect_timeout,
            read_timeout=self.endpoint.read_timeout,
            max_pool_connections=self.endpoint.max_pool_connections,
            retries={"total_max_attempts": 1, "mode": "standard"},
            connector_args=self._connector_args,
        )
        session = get_session()
        try:
            self._client = await self._stack.enter_async_context(
                session.create_client(
                    "sagemaker-runtime",
                    region_name=self.endpoint.region,
                    endpoint_url=self.endpoint.endpoint_url,
                    config=config,
                )
            )
        except NoRegionError:
            raise ConfigurationError(
                "the SageMaker scorer needs a region: set BIDDER_SAGEMAKER_REGION "
                "or AWS_DEFAULT_REGION, or configure one in the AWS profile"
            ) from None

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    async def score(self, rows: npt.NDArray[np.float32]) -> Scores:
        if self._client is None:
            raise ScoringError("the SageMaker client is not started", reason="model_error")
        if not self.breaker.allow():
            self.metrics.model_call_failed(self.kind, "circuit_open")
            raise ScoringError("circuit breaker open", reason="circuit_open")
        started = time.perf_counter()
        variant = self.endpoint.target_variant or ""
        try:
            arguments = self._static_arguments
            if self.endpoint.inference_ids:
                arguments = {**arguments, "InferenceId": self._next_inference_id()}
            async with asyncio.timeout(self.endpoint.invoke_timeout):
                response = await self._client.invoke_endpoint(
                    Body=encode_rows(rows, self.endpoint.content_type), **arguments
                )
                body = await response["Body"].read()
            variant = response.get("InvokedProductionVariant") or variant
            scores = decode_scores(
                body, media_type(response.get("ContentType")) or self.endpoint.content_type
            )
            if len(scores) != len(rows):
                raise PayloadError(f"{len(scores)} scores for {len(rows)} rows")
        except BaseException as exc:
            kind = classify_failure(exc)
            self.breaker.record_failure()
            self.metrics.model_call_failed(self.kind, kind, variant, time.perf_counter() - started)
            if isinstance(exc, asyncio.CancelledError) or kind == "unexpected":
                raise
            raise ScoringError(f"SageMaker invocation failed: {kind}", reason=kind) from exc
        self.breaker.record_success()
        self.metrics.model_call_succeeded(self.kind, variant, time.perf_counter() - started)
        return np.asarray(scores, dtype=np.float64)


def _invoke_arguments(endpoint: SageMakerEndpoint) -> dict[str, str]:
    arguments = {
        "EndpointName": endpoint.endpoint_name,
        "ContentType": endpoint.content_type,
        "Accept": endpoint.content_type,
    }
    optional = {
        "TargetVariant": endpoint.target_variant,
        "TargetModel": endpoint.target_model,
        "CustomAttributes": endpoint.custom_attributes,
    }
    arguments.update({name: value for name, value in optional.items() if value})
    return arguments


def classify_failure(exc: BaseException) -> str:
    """The failure kind of an exception raised while invoking the endpoint."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        if code in _ERROR_CODES:
            return _ERROR_CODES[code]
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return _STATUS_KINDS.get(status, "client_error")
    if isinstance(exc, ConnectTimeoutError):
        return "connect_timeout"
    if isinstance(exc, ReadTimeoutError):
        return "read_timeout"
    if isinstance(exc, TimeoutError | asyncio.CancelledError):
        return "timeout"
    if isinstance(exc, EndpointConnectionError):
        return _connection_failure(exc.kwargs.get("error"))
    if isinstance(exc, ConnectionClosedError | aiohttp.ServerDisconnectedError | ConnectionError):
        return "connection_reset"
    if isinstance(exc, aiohttp.ClientError):
        return "connection_reset"
    if isinstance(exc, PayloadError):
        return "bad_response"
    return "unexpected"


def _connection_failure(cause: object) -> str:
    """aiobotocore reports every connection problem as EndpointConnectionError; the aiohttp
    error it wraps says whether the name did not resolve, the connect was refused, or an
    established connection was reset."""
    if isinstance(cause, socket.gaierror | aiohttp.ClientConnectorDNSError):
        return "dns_failure"
    if isinstance(cause, aiohttp.ClientConnectorError):
        os_error = cause.os_error
        if isinstance(os_error, socket.gaierror) or "Name or service not known" in str(cause):
            return "dns_failure"
        return "connection_refused"
    return "connection_reset"
