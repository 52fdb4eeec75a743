"""Reading recorded bid traffic: the files the bidder's recorder writes, for `bidder replay`.

A recording is gzip-compressed JSON Lines (`*.jsonl.gz`, or `*.jsonl.gz.partial` while it
is written), one record per request:

    {"v": 1, "id": "...", "ts": 1764547200.123, "headers": {"content-type": "..."},
     "body": {...the request as received...}, "status": 204, "latency_ms": 0.4,
     "model_version": "...", "decision": {"outcome": "no_bid", "reason": null,
     "imps": [{"id": "1", "bid": false, "price": null, "score": 0.01,
               "reason": "below_threshold"}]}}

A body that was not valid JSON is in `body_b64` (base64 of the raw bytes) instead. Each
flush of the recorder is a gzip member of its own, so a recorder that crashed leaves a file
whose last member is cut short: what it holds up to the cut is read, its last incomplete
line dropped, and the file is reported as truncated. Any other damage is an error naming
the file and line.

The body is taken as the raw bytes of its JSON value (`msgspec.Raw`), not decoded and
encoded again, so a replay sends the bytes the recorder stored.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import msgspec

from bidder.errors import BidderError

RECORD_VERSION = 1
RECORDING_PATTERNS = ("*.jsonl.gz", "*.jsonl.gz.partial")
_READ_CHUNK = 1 << 20
# A gzip stream: deflate with gzip's header and trailer (CRC-32 and length are checked).
_GZIP_WBITS = 16 + zlib.MAX_WBITS
# Headers about the recorded connection or framing, not the request: the load generator
# sets its own. A JSON body is stored decoded, so its recorded content-encoding no longer
# applies to it either.
_CONNECTION_HEADERS = frozenset(
    ("host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "expect")
)
_ENCODING_HEADER = "content-encoding"


class RecordingError(BidderError):
    """A recording that cannot be read; the message names the file and line."""


class RecordedImp(msgspec.Struct, frozen=True):
    id: str
    bid: bool
    price: float | None = None
    score: float | None = None
    reason: str | None = None


class RecordedDecision(msgspec.Struct, frozen=True):
    outcome: Literal["bid", "no_bid", "invalid", "error"]
    reason: str | None = None
    imps: list[RecordedImp] = msgspec.field(default_factory=list)


class _Record(msgspec.Struct, frozen=True):
    v: int
    ts: float
    id: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    # Empty when absent (msgspec takes no union with Raw).
    body: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    body_b64: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    model_version: str | None = None
    decision: RecordedDecision | None = None


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request to send again, with what the bidder answered when it was recorded."""

    id: str | None
    ts: float
    headers: Mapping[str, str]
    body: bytes
    status: int | None
    decision: RecordedDecision | None


@dataclass
class RecordingSet:
    """Every record of some files, in arrival order."""

    requests: list[RecordedRequest] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    # Files whose last gzip member was cut short, as a crashed recorder leaves them.
    truncated: list[Path] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "files": len(self.files),
            "records": len(self.requests),
            "truncated_files": [str(path) for path in self.truncated],
        }


def find_recordings(paths: Iterable[Path]) -> list[Path]:
    """The files named, and the recordings in the directories named (sorted by name)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted({f for pattern in RECORDING_PATTERNS for f in path.glob(pattern)})
            if not inside:
                raise RecordingError(f"{path}: no *.jsonl.gz recording in this directory")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise RecordingError(f"{path}: no such file or directory")
    return found


def read_recordings(paths: Iterable[Path], *, max_records: int) -> RecordingSet:
    """Reads every record of `paths` (files or directories), sorted by arrival time.

    Raises `RecordingError` past `max_records` records: they are all held in memory.
    """
    recordings = RecordingSet()
    decoder = msgspec.json.Decoder(_Record)
    for path in find_recordings(paths):
        recordings.files.append(path)
        lines = _Lines(path)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            if len(recordings.requests) >= max_records:
                raise RecordingError(
                    f"{path}:{number}: more than {max_records:,} records "
                    "(raise --max-records, or replay fewer files)"
                )
            recordings.requests.append(_request(decoder, line, path, number))
        if lines.truncated:
            recordings.truncated.append(path)
    if not recordings.requests:
        raise RecordingError("the recordings hold no record")
    # A stable sort: files from several workers interleave, equal times keep file order.
    recordings.requests.sort(key=lambda request: request.ts)
    return recordings


def _request(
    decoder: msgspec.json.Decoder[_Record], line: bytes, path: Path, number: int
) -> RecordedRequest:
    try:
        record = decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise RecordingError(f"{path}:{number}: {exc}") from None
    if record.v != RECORD_VERSION:
        raise RecordingError(
            f"{path}:{number}: record version {record.v} (this bidder reads {RECORD_VERSION})"
        )
    headers = {
        name.lower(): value
        for name, value in record.headers.items()
        if name.lower() not in _CONNECTION_HEADERS
    }
    if record.body:
        body = bytes(record.body)
        headers.pop(_ENCODING_HEADER, None)
    elif record.body_b64 is not None:
        try:
            body = base64.b64decode(record.body_b64, validate=True)
        except binascii.Error as exc:
            raise RecordingError(f"{path}:{number}: body_b64 is not base64: {exc}") from None
    else:
        raise RecordingError(f"{path}:{number}: the record has neither `body` nor `body_b64`")
    return RecordedRequest(record.id, record.ts, headers, body, record.status, record.decision)


def gzip_members(
    file: BinaryIO, read_bytes: int = _READ_CHUNK
) -> Iterator[tuple[bytes, int | None]]:
    """A file of gzip members (a recording) decompressed piece by piece, `read_bytes` of it
    at a time: each piece with the offset just past its member when it ends one, else None.
    Raises `zlib.error` at a member that does not decompress."""
    decompressor = zlib.decompressobj(_GZIP_WBITS)
    offset = 0  # just past what has been read
    while chunk := file.read(read_bytes):
        offset += len(chunk)
        while chunk:
            text = decompressor.decompress(chunk)
            if not decompressor.eof:
                yield text, None
                break
            # A member ended; the next one may begin in the same chunk.
            chunk = decompressor.unused_data
            yield text, offset - len(chunk)
            decompressor = zlib.decompressobj(_GZIP_WBITS)


class _Lines:
    """The complete lines of a file of gzip members, noting a cut-short last member."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.truncated = False

    def __iter__(self) -> Iterator[bytes]:
        pending = b""
        for text in self._decompressed():
            pending += text
            *lines, pending = pending.split(b"\n")
            yield from lines
        if pending.strip():
            if not self.truncated:
                # A complete file ends its last line; a record without one is still whole.
                yield pending
            else:
                # The line the cut went through (a whole record is kept if it parses).
                try:
                    msgspec.json.decode(pending)
                except msgspec.DecodeError:
                    return
                yield pending

    def _decompressed(self) -> Iterator[bytes]:
        member = 1
        # Whether the current member has been given any byte: one that has, and has not
        # ended, was cut short (the recorder stopped in the middle of a flush).
        begun = False
        try:
            with self.path.open("rb") as file:
                for text, member_end in gzip_members(file):
                    yield text
                    if member_end is None:
                        begun = True
                    else:
                        member += 1
                        begun = False
        except zlib.error as exc:
            raise RecordingError(
                f"{self.path}: not a readable gzip file (member {member}: {exc})"
            ) from None
        except OSError as exc:
            raise RecordingError(f"{self.path}: {exc.strerror or exc}") from None
        self.truncated = begun
