"""Scoring through an Amazon SageMaker real-time endpoint.

The scorer owns what a call means, whichever HTTP client makes it (`scoring.invoke`):
the payload format, an overall timeout on every call (the clients' connect and read
timeouts do not cover the wait for a free pooled connection), the failure kinds counted
in the metrics and a circuit breaker that stops calls to an endpoint that keeps failing.
The invoker, opened once per process, only sends the bytes: aiobotocore (the reference)
or the lean aiohttp invoker. Neither retries: a retry cannot fit in an RTB deadline, and
a failing call costs a no-bid, not a 5xx.

Credentials come from the standard AWS chain (environment, profile, container or instance
role); the bidder's settings never hold them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from bidder.errors import ScoringError
from bidder.scoring.base import Scores
from bidder.scoring.breaker import CircuitBreaker
from bidder.scoring.invoke import InvocationFailed, SageMakerEndpoint, make_invoker
from bidder.scoring.payloads import PayloadError, decode_scores, encode_rows, media_type
from bidder.telemetry.metrics import Metrics

__all__ = ["SageMakerEndpoint", "SageMakerScorer", "classify_failure"]


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
        # connector_args: extra aiohttp connector options (a custom DNS resolver, say).
        self.invoker = make_invoker(endpoint, connector_args)
        self._started = False
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
        await self.invoker.start()
        self._started = True

    async def close(self) -> None:
        self._started = False
        await self.invoker.close()

    async def score(self, rows: npt.NDArray[np.float32]) -> Scores:
        if not self._started:
            raise ScoringError("the SageMaker client is not started", reason="model_error")
        if not self.breaker.allow():
            self.metrics.model_call_failed(self.kind, "circuit_open")
            raise ScoringError("circuit breaker open", reason="circuit_open")
        started = time.perf_counter()
        variant = self.endpoint.target_variant or ""
        inference_id = self._next_inference_id() if self.endpoint.inference_ids else None
        try:
            async with asyncio.timeout(self.endpoint.invoke_timeout):
                answer = await self.invoker.invoke(
                    encode_rows(rows, self.endpoint.content_type), inference_id
                )
            variant = answer.variant or variant
            scores = decode_scores(
                answer.body, media_type(answer.content_type) or self.endpoint.content_type
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


def classify_failure(exc: BaseException) -> str:
    """The failure kind of an exception raised while invoking the endpoint."""
    if isinstance(exc, InvocationFailed):
        return exc.kind
    # The overall timeout, or the request's own deadline cancelling the call.
    if isinstance(exc, TimeoutError | asyncio.CancelledError):
        return "timeout"
    if isinstance(exc, PayloadError):
        return "bad_response"
    return "unexpected"
