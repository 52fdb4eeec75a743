"""One recorded bid request: the record format, and how a capture becomes a line of it.

A record is one JSON object on one line (the recorder's files are JSON Lines):

    {"v": 1, "id": "r1", "ts": 1764547200.123,
     "headers": {"content-type": "application/json", "x-openrtb-version": "2.6"},
     "body": {...the request body, as received...}, "status": 200, "latency_ms": 0.41,
     "model_version": "default@2",
     "decision": {"outcome": "bid", "reason": null,
                  "imps": [{"id": "1", "bid": true, "price": 1.2, "score": 0.03,
                            "reason": null}]}}

The body is embedded as the bytes that arrived (decompressed when it came gzipped), not
decoded and encoded again: the bid path has already checked that it is JSON, and copying
bytes is what keeps recording cheap. A body that is not JSON (a rejected request) is in
`body_b64` instead, base64 of the raw bytes. The bid path hands over a `Capture`, a plain
tuple of objects it already holds; `RecordEncoder` turns it into a line in the writer's
thread, never on the event loop.
"""

from __future__ import annotations

import base64
from typing import Final, Literal

import msgspec

from bidder.asgi import Headers
from bidder.decision.policy import ImpDecision
from bidder.openrtb.model import BidRequest
from bidder.recording.redaction import Redactor

RECORD_VERSION: Final = 1
Outcome = Literal["bid", "no_bid", "invalid", "error"]

# The bid path's request-level no-bid reason for its own failures (counted as `error`).
ERROR_REASON: Final = "internal_error"
# Headers that describe the request rather than the connection; a replay sends them again.
RECORDED_HEADERS: Final = frozenset((b"content-type", b"x-openrtb-version"))
_CONTENT_ENCODING: Final = b"content-encoding"
_GZIP_MAGIC: Final = b"\x1f\x8b"
_NOT_JSON: Final = object()

# What the bid path decided: (status, the decoded request or None when it was rejected,
# the request-level no-bid reason or None, the per-impression decisions when it got that far).
Verdict = tuple[int, BidRequest | None, str | None, list[ImpDecision] | None]
# (arrival as unix time, the ASGI headers, the body, seconds to answer, the verdict).
Capture = tuple[float, Headers, bytes, float, Verdict]


class RecordedImp(msgspec.Struct, frozen=True):
    id: str
    bid: bool
    price: float | None
    score: float | None
    reason: str | None


class RecordedDecision(msgspec.Struct, frozen=True):
    outcome: Outcome
    reason: str | None
    imps: list[RecordedImp]


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """One request and what the bidder answered. `body` holds the JSON body's raw bytes;
    `body_b64` the base64 of a body that is not JSON (empty when redaction withheld it)."""

    v: int
    id: str
    ts: float
    headers: dict[str, str]
    body: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    body_b64: str | msgspec.UnsetType = msgspec.UNSET
    status: int
    latency_ms: float
    model_version: str
    decision: RecordedDecision

    def body_bytes(self) -> bytes:
        """The body as bytes to send again: the JSON as recorded, or the decoded base64."""
        if not isinstance(self.body, msgspec.UnsetType):
            return bytes(self.body)
        if not isinstance(self.body_b64, msgspec.UnsetType):
            return base64.b64decode(self.body_b64)
        return b""


class RecordEncoder:
    """Turns captures into records, each one line of JSON without its line break. Runs in
    the writer's thread: everything costly about recording happens here."""

    def __init__(self, model_version: str, redactor: Redactor | None) -> None:
        self.model_version = model_version
        self.redactor = redactor
        self._encoder = msgspec.json.Encoder()
        self._any_decoder = msgspec.json.Decoder()

    def encode(self, capture: Capture) -> bytes:
        arrival, headers, body, elapsed, (status, request, reason, decisions) = capture
        document: object = _NOT_JSON
        raw: bytes | None = None
        if _is_utf8(body):  # otherwise not JSON: kept as base64
            if request is not None and self.redactor is None:
                raw = _on_one_line(body)  # decoded by the bid path: it is JSON
            else:
                document = self._parse(body)
                if document is not _NOT_JSON:
                    raw = self._embeddable(body, document)
        request_id = request.id if request is not None else _id_of(document)
        record = Record(
            v=RECORD_VERSION,
            id=request_id or "",
            ts=arrival,
            headers=_recorded_headers(headers, raw_gzip=raw is None and _is_gzip(body)),
            body=msgspec.Raw(raw) if raw is not None else msgspec.UNSET,
            body_b64=msgspec.UNSET if raw is not None else self._base64(body),
            status=status,
            latency_ms=round(elapsed * 1000, 3),
            model_version=self.model_version,
            decision=RecordedDecision(
                outcome=_outcome(status, reason),
                reason=reason,
                imps=_recorded_imps(request, reason, decisions),
            ),
        )
        return self._encoder.encode(record)

    def _parse(self, body: bytes) -> object:
        try:
            return self._any_decoder.decode(body)
        except msgspec.DecodeError:
            return _NOT_JSON

    def _embeddable(self, body: bytes, document: object) -> bytes:
        if self.redactor is not None and isinstance(document, dict):
            self.redactor.redact(document)
            return self._encoder.encode(document)
        return _on_one_line(body)

    def _base64(self, body: bytes) -> str:
        if self.redactor is not None:
            # Identifiers inside bytes that do not parse cannot be found, so none are kept.
            return ""
        return base64.b64encode(body).decode("ascii")


def _on_one_line(body: bytes) -> bytes:
    # Inside JSON strings line breaks must be escaped, so any raw one is whitespace between
    # tokens: blanking it keeps the body's meaning and the record on one line.
    return body.replace(b"\n", b" ").replace(b"\r", b" ")


def _is_utf8(body: bytes) -> bool:
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _is_gzip(body: bytes) -> bool:
    return body.startswith(_GZIP_MAGIC)


def _id_of(document: object) -> str | None:
    if isinstance(document, dict):
        value = document.get("id")
        if isinstance(value, str):
            return value
    return None


def _recorded_headers(headers: Headers, *, raw_gzip: bool) -> dict[str, str]:
    """The request's own headers; `content-encoding` only for a body kept compressed (one
    that failed to decompress), since a JSON body is recorded decompressed."""
    recorded = {}
    for name, value in headers:
        if name in RECORDED_HEADERS or (raw_gzip and name == _CONTENT_ENCODING):
            recorded[name.decode("latin-1")] = value.decode("latin-1")
    return recorded


def _outcome(status: int, reason: str | None) -> Outcome:
    if status >= 400:
        return "invalid"
    if reason is None:
        return "bid"
    return "error" if reason == ERROR_REASON else "no_bid"


def _recorded_imps(
    request: BidRequest | None, reason: str | None, decisions: list[ImpDecision] | None
) -> list[RecordedImp]:
    if decisions is not None:
        return [
            RecordedImp(
                id=decision.imp.id or "",
                bid=decision.reason is None,
                price=decision.price,
                score=decision.score,
                reason=decision.reason,
            )
            for decision in decisions
        ]
    if request is None or request.imp is None:
        return []
    # Declined before any impression was scored: each impression carries the request's reason.
    return [RecordedImp(imp.id or "", False, None, None, reason) for imp in request.imp]
