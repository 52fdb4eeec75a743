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
(413 by `content-length`, 415) has an empty one. `ts` is the arrival as unix time and
`latency_ms` the time to answer, both to the microsecond. `price` is the price bid, null
for an impression not bid on.

The bid path hands over a `Capture`, a plain tuple of objects it already holds, and the
queue keeps its record at once: the headers and the impressions' decisions encoded, the
body as received, and the rest as the plain values they were, copied into the compiled
module's ring (`writer.py`), or as an `Entry` where that module leaves it to the Python.
An entry holds bytes, strings and numbers only, and is itself an object the garbage
collector never tracks: a capture kept until the writer's next pass would hold the decoded
request and its decisions, a dozen tracked objects per request, and such long-lived
objects are what makes Python's collector run, and run through the whole heap, more often
(measured on the benchmark, that cost the bidder about as much as writing the records).
`RecordEncoder` turns queued records into lines in the writer's thread: the body's
redaction, its checks and its embedding, and the encoding of everything not encoded on the
event loop happen there.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from functools import partial
from typing import Final, Protocol

import msgspec

from bidder.asgi import Headers
from bidder.decision.policy import ImpDecision
from bidder.openrtb.model import BidRequest
from bidder.recording.redaction import Redactor, one_line
from bidder.recording.speedups import RecordRing, ScannerTree, compiled

RECORD_VERSION: Final = 1

# The bid path's request-level no-bid reason for its own failures (counted as `error`).
ERROR_REASON: Final = "internal_error"
_ERROR_REASON: Final = ERROR_REASON.encode()
# Headers that describe the request rather than the connection; a replay sends them again.
RECORDED_HEADERS: Final = frozenset((b"content-type", b"x-openrtb-version"))
_CONTENT_ENCODING: Final = b"content-encoding"
# The recorded headers' names as the compiled module takes them, for a JSON body and for a
# body kept gzipped.
_HEADER_NAMES: Final = tuple(sorted(RECORDED_HEADERS))
_GZIP_HEADER_NAMES: Final = (*_HEADER_NAMES, _CONTENT_ENCODING)
_GZIP_MAGIC: Final = b"\x1f\x8b"
# A record, its members in the order of the format's description, and its line break.
# Filled in by formatting, once per record: a third of the CPU of encoding structs of its
# members and joining them; the body's key and the line break are in it because each piece
# joined on its own costs another copy of the record's bytes.
_RECORD: Final = (
    b'{"v":%d,"id":%%s,"ts":%%s,"headers":%%s,"%%s":%%s,"status":%%d,"latency_ms":%%s,'
    b'"model_version":%%s,"decision":{"outcome":%%s,"reason":%%s,"imps":%%s}}\n' % RECORD_VERSION
)

# What the bid path decided: (HTTP status, the decoded request or None when it was
# rejected, the request-level no-bid reason or None, the per-impression decisions when it
# got that far).
Verdict = tuple[int, BidRequest | None, str | None, list[ImpDecision] | None]
# (arrival as unix time, the ASGI headers, the body, seconds to answer, the model version
# that answered, the verdict).
Capture = tuple[float, Headers, bytes, float, str, Verdict]
# Most distinct recorded header sets whose encoding is kept (the usual traffic has a few).
_HEADER_CACHE_SIZE: Final = 64


class Entry(msgspec.Struct, frozen=True, gc=False):
    """A capture as the Python keeps it (and as the ring gives a record back): what the
    record needs of the answer, and the body as received. Never tracked by the garbage
    collector (`gc=False`), which holds since every field is bytes, a string or a number.
    Only what cannot be kept as such a value (the decisions, the headers) is encoded on the
    bid path: the rest, plain values, is encoded by the writer (on the benchmark that took
    1.1 of the bid path's 3.4 us per record)."""

    # None when the body was not decoded as a bid request: the writer reads the id from it.
    request_id: str | None
    arrival: float
    # The recorded headers, a JSON object.
    headers: bytes
    body: bytes
    status: int
    # Seconds to answer.
    elapsed: float
    model_version: str
    # The request-level no-bid reason.
    reason: str | None
    # The decision's `imps`, a JSON array.
    imps: bytes


class Queued(Protocol):
    """The writer's side of the hand-off queue (`writer.CaptureQueue`)."""

    @property
    def ring(self) -> RecordRing | None: ...

    def pop(self) -> Entry | None: ...


class RecordedImp(msgspec.Struct, frozen=True):
    id: str
    bid: bool
    price: float | None
    score: float | None
    reason: str | None


class EntryMaker:
    """Makes the queue's entries, on the event loop, once the answer is sent.

    With the compiled module, the bid path's hand-off is its `enqueue` (see `hand_off`),
    which copies the capture's record into the queue's ring with no Python frame and no
    entry at all; the entries made here are for the captures it leaves to the Python, and
    for the queue without the module. This keeps the encodings of the header sets seen
    most (the usual traffic has a few). Both write the same record, byte for byte: the
    compiled module has msgspec's encoder write the numbers too."""

    def __init__(self) -> None:
        self._encode = msgspec.json.Encoder().encode
        self._headers: dict[tuple[tuple[bytes, bytes], ...], bytes] = {}

    def hand_off(
        self, ring: RecordRing, slow_put: Callable[[Capture], None]
    ) -> Callable[[Capture], None]:
        """The bid path's hand-off to `ring`: the compiled module's `enqueue`, with every
        argument but the capture bound, which leaves all but the common case to
        `slow_put`."""
        assert compiled is not None
        return partial(
            compiled.enqueue, ring, slow_put, _HEADER_NAMES, _GZIP_HEADER_NAMES, self._encode
        )

    def __call__(self, capture: Capture) -> Entry:
        arrival, headers, body, elapsed, model_version, verdict = capture
        status, request, reason, decisions = verdict
        return Entry(
            None if request is None else request.id,
            arrival,
            self._recorded_headers(headers, body),
            body,
            status,
            elapsed,
            model_version,
            reason,
            self._encode(_recorded_imps(request, reason, decisions)),
        )

    def _recorded_headers(self, headers: Headers, body: bytes) -> bytes:
        """The request's own headers, as a JSON object; `content-encoding` only for a body
        kept compressed (gzip that did not decompress, the only body starting with gzip's
        magic number: a JSON body is recorded decompressed)."""
        if body.startswith(_GZIP_MAGIC):
            key = tuple(
                [
                    header
                    for header in headers
                    if header[0] in RECORDED_HEADERS or header[0] == _CONTENT_ENCODING
                ]
            )
        else:
            key = tuple([header for header in headers if header[0] in RECORDED_HEADERS])
        recorded = self._headers.get(key)
        if recorded is None:
            recorded = self._encode(
                {name.decode("latin-1"): value.decode("latin-1") for name, value in key}
            )
            if len(self._headers) < _HEADER_CACHE_SIZE:
                self._headers[key] = recorded
        return recorded


class RecordEncoder:
    """Turns entries into records, each one line of JSON ending in its line break. Runs in
    the writer's thread: the body's part of recording happens here.

    With a `redactor`, user identifiers in a JSON body are hashed or dropped, and a body
    that is not a JSON object is withheld (`body_b64` empty): identifiers in it could not
    be found.
    """

    def __init__(self, redactor: Redactor | None) -> None:
        self.redactor = redactor
        self._encode = msgspec.json.Encoder().encode
        self._id_decoder = msgspec.json.Decoder(_WithId)
        # The compiled encoder keeps identifiers (no tree), drops them, or hashes them under
        # the key; without the compiled scanner, every record is encoded here.
        self._tree: ScannerTree | None = None if redactor is None else redactor.tree
        self._hash_key = None if redactor is None else redactor.hash_key
        self._compiled = redactor is None or self._tree is not None

    def encode_queued(
        self, queue: Queued, limit: int, room: int, on_error: Callable[[], None]
    ) -> tuple[bytes, int, int]:
        """Up to `limit` of the records queued, taken out of `queue`, as lines, up to the one
        that fills `room` bytes: (the lines joined, records taken, records written).

        The compiled encoder (`_speedups.c`) writes what `encode` writes, byte for byte, in a
        fraction of its time and with the GIL let go, from the queue's ring; it leaves to
        `encode`, one at a time, a body the bid path did not decode, a string JSON would
        escape, an identifier to hash written with an escape, and every record without the
        module. A record that cannot be encoded is left out, `on_error` called while its
        exception is handled."""
        ring = queue.ring if self._compiled else None
        parts: list[bytes] = []
        size = taken = written = 0
        while taken < limit and size < room:
            if ring is not None:
                data, count = ring.encode(
                    limit - taken,
                    room - size,
                    self._tree,
                    RECORD_VERSION,
                    _ERROR_REASON,
                    self._hash_key,
                )
                if count:
                    parts.append(data)
                    size += len(data)
                    taken += count
                    written += count
                    continue
            try:
                entry = queue.pop()
                if entry is None:
                    break
                line = self.encode(entry)
            except Exception:  # a record that cannot be taken or encoded must not stop the rest
                taken += 1
                on_error()
                continue
            taken += 1
            parts.append(line)
            size += len(line)
            written += 1
        return b"".join(parts), taken, written

    def encode(self, entry: Entry) -> bytes:
        request_id = entry.request_id
        body = entry.body
        json_body = self._json_body(body, decoded=request_id is not None)
        if json_body is None:
            body_key, body_value = b"body_b64", self._encode(self._base64(body))
        else:
            body_key, body_value = b"body", json_body
            if request_id is None:
                request_id = self._id_of(json_body)
        encode = self._encode
        reason = entry.reason
        return _RECORD % (
            encode(request_id or ""),
            fixed(entry.arrival, 6),
            entry.headers,
            body_key,
            body_value,
            entry.status,
            fixed(entry.elapsed * 1000, 3),
            encode(entry.model_version),
            _outcome(entry.status, reason),
            encode(reason),
            entry.imps,
        )

    def _json_body(self, body: bytes, *, decoded: bool) -> bytes | None:
        """The body to embed as JSON, redacted when asked; None to store it as base64."""
        if not body or not _is_utf8(body):
            return None
        if self.redactor is not None:
            return self.redactor.redact(body, valid=decoded)
        if not decoded:
            try:
                msgspec.json.decode(body)
            except msgspec.DecodeError:
                return None
        return one_line(body)

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


def fixed(value: float, decimals: int) -> bytes:
    """`value` as a JSON number in `decimals` places (the record's times: seconds to the
    microsecond, milliseconds to the microsecond), rounded half to even, trailing zeros
    dropped but one; null when it is not finite. The compiled encoder writes the same."""
    if not math.isfinite(value):
        return b"null"
    units = round(value * 10**decimals)
    sign = "-" if units < 0 else ""
    whole, part = divmod(abs(units), 10**decimals)
    return f"{sign}{whole}.{part:0{decimals}d}".rstrip("0").encode() + (b"0" if part == 0 else b"")


def _is_utf8(body: bytes) -> bool:
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _outcome(status: int, reason: str | None) -> bytes:
    """The decision's outcome, a JSON string."""
    if status >= 400:
        return b'"invalid"'
    if reason is None:
        return b'"bid"'
    return b'"error"' if reason == ERROR_REASON else b'"no_bid"'


def _recorded_imps(
    request: BidRequest | None, reason: str | None, decisions: list[ImpDecision] | None
) -> list[RecordedImp]:
    if decisions is not None:
        return [
            RecordedImp(decision.imp.id or "", True, decision.price, decision.score, None)
            if decision.reason is None
            else RecordedImp(decision.imp.id or "", False, None, decision.score, decision.reason)
            for decision in decisions
        ]
    if request is None or request.imp is None:
        return []
    # Declined before any impression was scored: each impression carries the request's reason.
    return [RecordedImp(imp.id or "", False, None, None, reason) for imp in request.imp]
