"""`POST /openrtb2/bid`: the hot path.

`BidEndpoint.begin` turns a request's body into its answer, or into a `Scoring` (its rows
with the model) that `conclude` turns into the answer once the scores are back, whoever
carries the request: `BidderHttpProtocol` calls them straight from httptools' callbacks for
plainly framed requests (`direct.py`), with a callback on the scores' future and no task,
and the endpoint's own ASGI handler (`decide`, which awaits the scores) for everything
else and for any other ASGI server.

The bid route bypasses FastAPI's routing, dependency injection and pydantic validation,
which together cost several times the bidder's own work per request; msgspec decodes and
validates the body in one pass instead. Every answer is a 200 bid, a 204 no-bid or a 4xx
naming what is wrong with the request: an exception inside the bidder is a no-bid, never
a 5xx, because an exchange penalises a bidder that errs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Final

import orjson

from bidder.asgi import (
    BodyTooLarge,
    Headers,
    Message,
    Receive,
    Scope,
    Send,
    read_body,
    respond,
)
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
from bidder.server.runtime import Runtime
from bidder.server.state import AppState
from bidder.settings import Settings
from bidder.telemetry import Metrics, SampledLog

BID_PATH: Final = "/openrtb2/bid"
VERSION_HEADER: Final = b"x-openrtb-version"

logger = logging.getLogger("bidder.bid")

_JSON: Final = (b"content-type", b"application/json")
# What `BidEndpoint.decide` returns: the verdict (its status is the answer's), the answer's
# body (empty for a 204) and the request body decompressed, which is what gets recorded.
Decided = tuple[Verdict, bytes, bytes]


@dataclass(slots=True)
class Scoring:
    """A bid request whose rows are with the model: `future` brings their scores, which
    `BidEndpoint.conclude` turns into the answer."""

    request: BidRequest
    # The request body decompressed, which is what gets recorded.
    body: bytes
    # The model, spec and policy the rows were made for: a reload while the scores are out
    # must not have another policy decide on them.
    runtime: Runtime
    future: asyncio.Future[list[float]]
    # When the rows were ready (`time.perf_counter()`): the model's time counts from here.
    vectorized: float


# The versions a request names most often, negotiated once (see `_negotiate_version`).
_KNOWN_VERSIONS: Final = {version.encode(): version.encode() for version in SUPPORTED_VERSIONS}


class BidEndpoint:
    """The bid handler. Per request it does only what the request needs: everything that
    can be is resolved here once (limits, the metrics' recording functions, the no-bid
    answers of each protocol version), and what it records goes into the batched metrics
    as list appends, folded into Prometheus at each flush."""

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
            max_loop_lag=settings.admission_max_loop_lag_ms / 1000,
        )
        admission = self.admission
        metrics.in_flight.follow(lambda: admission.in_flight)
        self._no_bid_answers = {
            version: _NoBidAnswer(version)
            for version in {self.default_version, *(v.encode() for v in SUPPORTED_VERSIONS)}
        }
        self._observe_parse = metrics.stage["parse"].observe
        self._observe_features = metrics.stage["features"].observe
        self._observe_score = metrics.stage["score"].observe
        self._observe_decide = metrics.stage["decide"].observe
        self._observe_request = metrics.request_time.observe
        self._count_outcome = metrics.outcome_tally.add
        self._count_no_bid = metrics.no_bid_tally.add

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The bid route as an ASGI handler. `BidderHttpProtocol` answers most bid requests
        without ASGI (`decide` and `finish`, straight from the parser's callbacks); this
        serves the rest (unusual framing, pipelined requests) and any other ASGI server."""
        started = time.perf_counter()
        arrival = time.time()
        if scope["method"] != "POST":
            await respond(send, 405, b'{"error": "use POST"}', [_JSON, (b"allow", b"POST")])
            return
        admission = self.admission
        if admission.overloaded():
            # Served by a server without `BidderHttpProtocol`, which sheds before ASGI.
            await self._no_bid_answers[self.default_version].send(send)
            self.shed(time.perf_counter() - started)
            return
        admission.started()
        headers = scope["headers"]
        version = self.default_version
        try:
            try:
                version, gzipped, _ = self.check_headers(headers)
                try:
                    received = await read_body(receive, self.max_body)
                except BodyTooLarge:
                    raise self._too_large() from None
            except RequestError as exc:
                verdict, answer = self._refuse(version, exc)
                body = b""
            else:
                if received is None:
                    return  # the client went away
                verdict, answer, body = await self.decide(
                    received, gzipped, version, arrival, started
                )
            status = verdict[0]
            if status == 204:
                await self._no_bid_answers[version].send(send)
            else:
                await respond(send, status, answer, [_JSON, (VERSION_HEADER, version)])
            self.finish(arrival, started, headers, body, verdict)
        finally:
            admission.finished()

    async def decide(
        self, received: bytes, gzipped: bool, version: bytes, arrival: float, started: float
    ) -> Decided:
        """The answer to a bid request whose headers `check_headers` accepted, with the
        body as `received`: (verdict, the answer's body, the request body decompressed).
        The caller sends the answer, with the verdict's status, then calls `finish`; it has
        counted the request in flight with `admission.started()`."""
        step = self.begin(received, gzipped, version, arrival, started)
        if not isinstance(step, Scoring):
            return step
        # `conclude` reads a failure from the future.
        with contextlib.suppress(Exception):
            await step.future
        return self.conclude(step)

    def begin(
        self, received: bytes, gzipped: bool, version: bytes, arrival: float, started: float
    ) -> Decided | Scoring:
        """`decide` up to the model: the answer, when the request gets one without scores
        (refused, declined, past its budget), or its rows handed to the model."""
        body = received
        try:
            if gzipped:
                body = self._gunzip(received)
            request = decode_bid_request(
                body, max_imps=self.max_imps, max_depth=self.max_json_depth
            )
        except RequestError as exc:
            verdict, answer = self._refuse(version, exc)
            return verdict, answer, body
        return self._score(request, body, arrival, started)

    def conclude(self, scoring: Scoring) -> Decided:
        """`decide` from the scores on: the answer to a request whose scores' future is
        done, whatever it brought (scores, a failure, a cancellation)."""
        verdict, answer = self._decision(scoring)
        return verdict, answer, scoring.body

    def finish(
        self, arrival: float, started: float, headers: Headers, body: bytes, verdict: Verdict
    ) -> None:
        """Once the answer is sent: its latency observed, the request recorded if sampled."""
        elapsed = time.perf_counter() - started
        self._observe_request(elapsed)
        recorder = self.state.recorder
        if recorder is not None and (
            recorder.sampled.takes_all or recorder.sampled(verdict[1], body)
        ):
            # References only: the recorder's thread does the rest.
            recorder.put((arrival, headers, body, elapsed, self.metrics.model_version, verdict))

    def shed(self, elapsed: float) -> None:
        """Count a request answered with a no-bid because the bidder is overloaded."""
        self._count_outcome("no_bid")
        self._count_no_bid("overload")
        self.metrics.shed.inc()
        self._observe_request(elapsed)

    def _refuse(self, version: bytes, error: RequestError) -> tuple[Verdict, bytes]:
        self.metrics.rejected(error.status_code)
        self.errors.log(
            logging.WARNING,
            type(error).__name__,
            "bid request refused",
            {"status": error.status_code, "error": error.message, "field": _field(error)},
        )
        return (error.status_code, None, None, None), orjson.dumps({"error": error.message})

    def check_headers(self, headers: Headers) -> tuple[bytes, bool, int | None]:
        """What the headers ask for: (the protocol version to answer in, whether the body is
        gzipped, its declared length, None when it is chunked); `RequestError` for headers
        the bidder refuses."""
        content_type = None
        encoding = b"identity"
        version = self.default_version
        framed = False
        length = None
        for name, value in headers:
            if name == b"content-type":
                content_type = value
            elif name == b"content-encoding":
                encoding = value.strip().lower()
            elif name == VERSION_HEADER:
                version = _KNOWN_VERSIONS.get(value) or _negotiate_version(value)
            elif name == b"transfer-encoding":
                framed = True  # httptools has checked the chunked framing
            elif name == b"content-length":
                framed = True
                if not value.isdigit():
                    raise InvalidRequest("content-length: not a number")
                length = int(value)
                if length > self.max_body:
                    raise self._too_large()
        if not framed:
            # HTTP/1.1 reads a request without either as an empty body: say what is missing.
            raise LengthRequired("content-length: missing (send one, or a chunked body)")
        if content_type is None:
            raise UnsupportedMediaType("content-type: missing, expected application/json")
        if content_type != b"application/json":  # the usual value needs no parsing
            media_type = content_type.split(b";", 1)[0].strip().lower()
            if media_type != b"application/json":
                raise UnsupportedMediaType(
                    f"content-type: {media_type.decode('latin-1')!r} is not application/json"
                )
        if encoding == b"identity":
            return version, False, length
        if encoding != b"gzip":
            raise UnsupportedMediaType(
                f"content-encoding: {encoding.decode('latin-1')!r} is not supported (gzip is)"
            )
        return version, True, length

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

    def _score(
        self, request: BidRequest, body: bytes, arrival: float, started: float
    ) -> Decided | Scoring:
        parsed = time.perf_counter()
        self._observe_parse(parsed - started)
        runtime = self.state.runtime
        if runtime is None:
            return (*self._no_bid(request, "not_ready"), body)
        deadline = started + self.deadlines.budget(request.tmax)
        try:
            # Lists, not an array: the batcher builds one array for the whole batch.
            rows = runtime.vectorizer.rows(request, arrival)
            vectorized = time.perf_counter()
            self._observe_features(vectorized - parsed)
            remaining = deadline - vectorized
            model_time = self.model_time
            if remaining < model_time.expected:
                # A skip measures nothing: pulled toward its floor, the estimate cannot stay
                # above every budget for good after one stall of the process.
                model_time.observe(model_time.floor)
                return (*self._no_bid(request, "deadline_skip"), body)
            loop_deadline = asyncio.get_running_loop().time() + remaining
            future = runtime.scorer.submit(rows, loop_deadline)
        except Exception as exc:
            return (*self._failed(request, exc), body)
        return Scoring(request, body, runtime, future, vectorized)

    def _decision(self, scoring: Scoring) -> tuple[Verdict, bytes]:
        request = scoring.request
        runtime = scoring.runtime
        try:
            if scoring.future.cancelled():
                # The model call was cancelled under it (a shutdown past its grace period).
                raise ScoringError("the model call was cancelled", reason="cancelled")
            scores = scoring.future.result()
            scored = time.perf_counter()
            self.model_time.observe(scored - scoring.vectorized)
            self._observe_score(scored - scoring.vectorized)
            decisions = runtime.policy.decide(request, scores)
            response = runtime.policy.respond(request, decisions)
            self._observe_decide(time.perf_counter() - scored)
        except DeadlineExceeded:
            # Its rows leave a batch not yet sent; a call nobody waits for is cancelled.
            return self._no_bid(request, "deadline")
        except Exception as exc:
            return self._failed(request, exc)
        self._count_decisions(decisions)
        if response is None:
            reason = decisions[0].reason or "no_creative"
            return self._no_bid(request, reason, decisions)
        self._count_outcome("bid")
        return (200, request, None, decisions), encode_bid_response(response)

    def _failed(self, request: BidRequest, error: Exception) -> tuple[Verdict, bytes]:
        """The no-bid of a request the bidder failed on: the model's failure, or its own."""
        if isinstance(error, ScoringError):
            self.errors.log(
                logging.WARNING, error.reason, "model failed to score", {"request_id": request.id}
            )
            reason = "circuit_open" if error.reason == "circuit_open" else "model_error"
            return self._no_bid(request, reason)
        self.errors.log(
            logging.ERROR,
            "internal_error",
            "bid path failed; answering no-bid",
            {"request_id": request.id},
            exc_info=error,
        )
        return self._no_bid(request, "internal_error", outcome="error")

    def _count_decisions(self, decisions: list[ImpDecision]) -> None:
        metrics = self.metrics
        observe_score = metrics.score.observe
        count = metrics.imp_decision_tally.add
        for decision in decisions:
            observe_score(decision.score)
            reason = decision.reason
            if reason is not None:
                count(reason)
                continue
            count("bid")
            if decision.price is not None:
                metrics.bid_price.observe(decision.price)

    def _no_bid(
        self,
        request: BidRequest,
        reason: str,
        decisions: list[ImpDecision] | None = None,
        outcome: str = "no_bid",
    ) -> tuple[Verdict, bytes]:
        self._count_outcome(outcome)
        self._count_no_bid(reason)
        return (204, request, reason, decisions), b""


class _NoBidAnswer:
    """A version's 204 answer, its two ASGI messages built once: an ASGI server reads the
    messages it is sent and never changes them, and a no-bid is most answers."""

    __slots__ = ("_body", "_start")

    def __init__(self, version: bytes) -> None:
        self._start: Message = {
            "type": "http.response.start",
            "status": 204,
            "headers": [(VERSION_HEADER, version)],
        }
        self._body: Message = {"type": "http.response.body", "body": b""}

    async def send(self, send: Send) -> None:
        await send(self._start)
        await send(self._body)


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
