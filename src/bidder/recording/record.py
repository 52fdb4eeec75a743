"""One recorded bid request: what the bid path hands over, and the line it becomes.

A record is one JSON object on one line (recordings are JSON Lines):

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
`body_b64` instead, base64 of the raw bytes; a request refused before its body was read
(413 by `content-length`, 415) has an empty one. `price` is the price bid, null for an
impression not bid on.

The bid path hands over a `Capture`, a plain tuple of objects it already holds;
`RecordEncoder` turns it into a line in the writer's thread, never on the event loop.
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

# What the bid path decided: (HTTP status, the decoded request or None when it was
# rejected, the request-level no-bid reason or None, the per-impression decisions when it
# got that far).
Verdict = tuple[int, BidRequest | None, str | None, list[ImpDecision] | None]
# (arrival as unix time, the ASGI headers, the body, seconds to answer, the model version
# that answered, the verdict).
Capture = tuple[float, Headers, bytes, float, str, Verdict]


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


class Record(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One request and what the bidder answered: exactly one of `body` (the JSON body's
    raw bytes) and `body_b64` is set."""

    v: int
    id: str
    ts: float
    headers: dict[str, str]
    body: msgspec.Raw | None = None
    body_b64: str | None = None
    status: int
    latency_ms: float
    model_version: str
    decision: RecordedDecision


class RecordEncoder:
    """Turns captures into records, each one line of JSON without its line break. Runs in
    the writer's thread: everything costly about recording happens here.

    With a `redactor`, user identifiers in a JSON body are hashed or dropped, and a body
    that is not a JSON object is withheld (`body_b64` empty): identifiers in it could not
    be found.
    """

    def __init__(self, redactor: Redactor | None) -> None:
        self.redactor = redactor
        self._encoder = msgspec.json.Encoder()
        self._id_decoder = msgspec.json.Decoder(_WithId)

    def encode(self, capture: Capture) -> bytes:
        arrival, headers, body, elapsed, model_version, verdict = capture
        status, request, reason, decisions = verdict
        json_body = self._json_body(body, decoded=request is not None)
        if request is not None:
            request_id = request.id
        elif json_body is not None:
            request_id = self._id_of(json_body)
        else:
            request_id = None
        record = Record(
            v=RECORD_VERSION,
            id=request_id or "",
            ts=arrival,
            headers=_recorded_headers(headers, raw_gzip=json_body is None and _is_gzip(body)),
            body=msgspec.Raw(json_body) if json_body is not None else None,
            body_b64=None if json_body is not None else self._base64(body),
            status=status,
            latency_ms=round(elapsed * 1000, 3),
            model_version=model_version,
            decision=RecordedDecision(
                outcome=_outcome(status, reason),
                reason=reason,
                imps=_recorded_imps(request, reason, decisions),
            ),
        )
        return self._encoder.encode(record)

    def _json_body(self, body: bytes, *, decoded: bool) -> bytes | None:
        """The body to embed as JSON, redacted when asked; None to store it as base64."""
        if not body or not _is_utf8(body):
            return None
        if self.redactor is not None:
            return self.redactor.redact(body)
        if not decoded:
            try:
                msgspec.json.decode(body)
            except msgspec.DecodeError:
                return None
        return _on_one_line(body)

    def _id_of(self, body: bytes) -> str | None:
        try:
            return self._id_decoder.decode(body).id
        except msgspec.DecodeError:
            return None  # JSON, but not an object with a string id

    def _base64(self, body: bytes) -> str:
        if self.redactor is not None:
            return ""
        return base64.b64encode(body).decode("ascii")


class _WithId(msgspec.Struct):
    id: str | None = None


def _on_one_line(body: bytes) -> bytes:
    # Inside JSON strings line breaks must be escaped, so any raw one is whitespace between
    # tokens: blanking it keeps the body's meaning and the record on one line.
    if b"\n" not in body and b"\r" not in body:
        return body
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
                price=decision.price if decision.reason is None else None,
                score=decision.score,
                reason=decision.reason,
            )
            for decision in decisions
        ]
    if request is None or request.imp is None:
        return []
    # Declined before any impression was scored: each impression carries the request's reason.
    return [RecordedImp(imp.id or "", False, None, None, reason) for imp in request.imp]
