"""`POST /openrtb2/bid`: the hot path, as a plain ASGI handler.

The bid route bypasses FastAPI's routing, dependency injection and pydantic validation,
which together cost several times the bidder's own work per request; msgspec decodes and
validates the body in one pass instead. Every answer is a 200 bid, a 204 no-bid or a 4xx
naming what is wrong with the request: an exception inside the bidder is a no-bid, never
a 5xx, because an exchange penalises a bidder that errs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from typing import Final

import orjson

from bidder.asgi import BodyTooLarge, Receive, Scope, Send, read_body, respond
from bidder.decision.policy import ImpDecision
from bidder.errors import (
    InvalidRequest,
    LengthRequired,
    PayloadTooLarge,
    RequestError,
    ScoringError,
    UnsupportedMediaType,
)
from bidder.openrtb import SUPPORTED_VERSIONS, decode_bid_request, encode_bid_response
from bidder.openrtb.model import BidRequest
from bidder.recording import Verdict
from bidder.scoring.batcher import DeadlineExceeded
from bidder.server.admission import AdmissionControl
from bidder.server.deadline import DeadlinePolicy, ModelTimeEstimate
from bidder.server.state import AppState
from bidder.settings import Settings
from bidder.telemetry import Metrics, SampledLog

BID_PATH: Final = "/openrtb2/bid"
VERSION_HEADER: Final = b"x-openrtb-version"

logger = logging.getLogger("bidder.bid")

_JSON: Final = (b"content-type", b"application/json")


class BidEndpoint:
    def __init__(self, settings: Settings, metrics: Metrics, state: AppState) -> None:
        self.settings = settings
        self.metrics = metrics
        self.state = state
        self.max_body = settings.max_body_bytes
        self.max_decompressed = settings.max_decompressed_bytes
        self.max_imps = settings.max_imps
        self.max_json_depth = settings.max_json_depth
        self.default_version = settings.openrtb_version.encode()
        # Bid-path errors are logged as samples; the metrics count every one of them.
        self.errors = SampledLog(
            logger, interval=settings.log_error_interval_seconds, limit=settings.log_error_samples
        )
        self.deadlines = DeadlinePolicy(
            network_allowance=settings.deadline_network_allowance_ms / 1000,
            ceiling=settings.deadline_ceiling_ms / 1000,
            default=settings.deadline_default_ms / 1000,
        )
        self.model_time = ModelTimeEstimate(floor=settings.deadline_min_model_ms / 1000)
        self.admission = AdmissionControl(
            max_queue_delay=settings.admission_max_queue_ms / 1000,
            min_concurrency=settings.admission_min_concurrency,
        )
        admission = self.admission
        metrics.in_flight.follow(lambda: admission.in_flight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        arrival = time.time()
        if scope["method"] != "POST":
            await respond(send, 405, b'{"error": "use POST"}', [_JSON, (b"allow", b"POST")])
            return
        admission = self.admission
        if admission.overloaded():
            # Served by a server without `BidderHttpProtocol`, which sheds before ASGI.
            await respond(send, 204, b"", [(VERSION_HEADER, self.default_version)])
            self.shed(time.perf_counter() - started)
            return
        admission.started()
        try:
            await self._answer(scope, receive, send, started, arrival)
        finally:
            admission.finished()

    def shed(self, elapsed: float) -> None:
        """Count a request answered with a no-bid because the bidder is overloaded."""
        metrics = self.metrics
        metrics.outcome["no_bid"].inc()
        metrics.no_bid_reason["overload"].inc()
        metrics.shed.inc()
        metrics.request_time.observe(elapsed)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, started: float, arrival: float
    ) -> None:
        version = self.default_version
        body = b""
        try:
            version, gzipped = self._check_headers(scope["headers"])
            try:
                received = await read_body(receive, self.max_body)
            except BodyTooLarge:
                raise self._too_large() from None
            if received is None:
                return  # the client went away
            body = received
            if gzipped:
                body = self._gunzip(body)
            verdict = await self._bid(body, arrival, started, version, send)
        except RequestError as exc:
            self.metrics.rejected(exc.status_code)
            self.errors.log(
                logging.WARNING,
                type(exc).__name__,
                "bid request refused",
                {"status": exc.status_code, "error": exc.message, "field": _field(exc)},
            )
            headers = [_JSON, (VERSION_HEADER, version)]
            await respond(send, exc.status_code, orjson.dumps({"error": exc.message}), headers)
            verdict = (exc.status_code, None, None, None)
        elapsed = time.perf_counter() - started
        self.metrics.request_time.observe(elapsed)
        recorder = self.state.recorder
        if recorder is not None and recorder.sampled(verdict[1], body):
            # References only, once the answer is sent: the recorder's thread does the rest.
            model_version = self.metrics.model_version
            recorder.put((arrival, scope["headers"], body, elapsed, model_version, verdict))

    def _check_headers(self, headers: list[tuple[bytes, bytes]]) -> tuple[bytes, bool]:
        content_type = None
        encoding = b"identity"
        version = self.default_version
        framed = False
        for name, value in headers:
            if name == b"content-type":
                content_type = value
            elif name == b"content-encoding":
                encoding = value.strip().lower()
            elif name == VERSION_HEADER:
                version = _negotiate_version(value)
            elif name == b"transfer-encoding":
                framed = True  # httptools has checked the chunked framing
            elif name == b"content-length":
                framed = True
                if not value.isdigit():
                    raise InvalidRequest("content-length: not a number")
                if int(value) > self.max_body:
                    raise self._too_large()
        if not framed:
            # HTTP/1.1 reads a request without either as an empty body: say what is missing.
            raise LengthRequired("content-length: missing (send one, or a chunked body)")
        if content_type is None:
            raise UnsupportedMediaType("content-type: missing, expected application/json")
        media_type = content_type.split(b";", 1)[0].strip().lower()
        if media_type != b"application/json":
            raise UnsupportedMediaType(
                f"content-type: {media_type.decode('latin-1')!r} is not application/json"
            )
        if encoding not in (b"identity", b"gzip"):
            raise UnsupportedMediaType(
                f"content-encoding: {encoding.decode('latin-1')!r} is not supported (gzip is)"
            )
        return version, encoding == b"gzip"

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"body: larger than the limit of {self.max_body} bytes")

    def _gunzip(self, body: bytes) -> bytes:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            # max_length bounds the memory a gzip bomb can claim before it is refused.
            data = decompressor.decompress(body, self.max_decompressed + 1)
        except zlib.error:
            raise InvalidRequest("body: not valid gzip data") from None
        if len(data) > self.max_decompressed:
            raise PayloadTooLarge(
                f"body: larger than the limit of {self.max_decompressed} bytes once decompressed"
            )
        if not decompressor.eof:
            raise InvalidRequest("body: gzip data is truncated")
        return data

    async def _bid(
        self, body: bytes, arrival: float, started: float, version: bytes, send: Send
    ) -> Verdict:
        metrics = self.metrics
        runtime = self.state.runtime
        request = decode_bid_request(body, max_imps=self.max_imps, max_depth=self.max_json_depth)
        parsed = time.perf_counter()
        metrics.stage["parse"].observe(parsed - started)
        if runtime is None:
            return await self._no_bid(send, version, request, "not_ready")
        deadline = started + self.deadlines.budget(request.tmax)
        try:
            rows = runtime.vectorizer.matrix(request, arrival)
            vectorized = time.perf_counter()
            metrics.stage["features"].observe(vectorized - parsed)
            remaining = deadline - vectorized
            if remaining < self.model_time.expected:
                # A skip measures nothing: pulled toward its floor, the estimate cannot stay
                # above every budget for good after one stall of the process.
                self.model_time.observe(self.model_time.floor)
                return await self._no_bid(send, version, request, "deadline_skip")
            try:
                loop_deadline = asyncio.get_running_loop().time() + remaining
                scores = await runtime.scorer.score(rows, loop_deadline)
            except DeadlineExceeded:
                # Its rows leave a batch not yet sent; a call nobody waits for is cancelled.
                return await self._no_bid(send, version, request, "deadline")
            scored = time.perf_counter()
            self.model_time.observe(scored - vectorized)
            metrics.stage["score"].observe(scored - vectorized)
            decisions = runtime.policy.decide(request, scores)
            response = runtime.policy.respond(request, decisions)
            metrics.stage["decide"].observe(time.perf_counter() - scored)
        except ScoringError as exc:
            self.errors.log(
                logging.WARNING, exc.reason, "model failed to score", {"request_id": request.id}
            )
            reason = "circuit_open" if exc.reason == "circuit_open" else "model_error"
            return await self._no_bid(send, version, request, reason)
        except Exception:
            self.errors.log(
                logging.ERROR,
                "internal_error",
                "bid path failed; answering no-bid",
                {"request_id": request.id},
                exc_info=True,
            )
            return await self._no_bid(send, version, request, "internal_error", outcome="error")
        observe_score = metrics.score.observe
        for decision in decisions:
            observe_score(decision.score)
            if decision.reason is None and decision.price is not None:
                metrics.bid_price.observe(decision.price)
            metrics.imp_decision["bid" if decision.reason is None else decision.reason].inc()
        if response is None:
            reason = decisions[0].reason or "no_creative"
            return await self._no_bid(send, version, request, reason, decisions)
        metrics.outcome["bid"].inc()
        await respond(send, 200, encode_bid_response(response), [_JSON, (VERSION_HEADER, version)])
        return (200, request, None, decisions)

    async def _no_bid(
        self,
        send: Send,
        version: bytes,
        request: BidRequest,
        reason: str,
        decisions: list[ImpDecision] | None = None,
        outcome: str = "no_bid",
    ) -> Verdict:
        self.metrics.outcome[outcome].inc()
        self.metrics.no_bid_reason[reason].inc()
        await respond(send, 204, b"", [(VERSION_HEADER, version)])
        return (204, request, reason, decisions)


def _field(error: RequestError) -> str | None:
    """The field path an invalid request failed at, when the error names one."""
    return error.path or None if isinstance(error, InvalidRequest) else None


def _negotiate_version(value: bytes) -> bytes:
    version = value.strip()
    if version.decode("latin-1") in SUPPORTED_VERSIONS:
        return version
    if version.startswith(b"2."):
        # 2.0-2.4 requests are subsets of 2.5; answering as 2.5 is what they can read.
        return b"2.5"
    raise InvalidRequest(
        f"x-openrtb-version: {version.decode('latin-1')!r} is not supported (2.5 and 2.6 are)"
    )
