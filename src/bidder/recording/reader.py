"""Reading recordings: gzip-compressed JSON Lines, one gzip member per flush.

A file the recorder closed is complete. A `.partial` file left by a process that died may
end in a member cut short: what that member holds up to the cut is still read (a prefix of
a deflate stream decompresses to a prefix of its data), its last incomplete line dropped,
and the reader reports the file as truncated. Any other damage (a bad checksum, data that
is not deflate, a line that is not a record) is a `RecordingError` naming the file.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

import msgspec

from bidder.errors import BidderError
from bidder.recording.record import Record

_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS  # gzip header and trailer, CRC-32 checked
_READ_CHUNK: Final = 1 << 20


class RecordingError(BidderError):
    """A recording that cannot be read; the message names the file and where."""


class RecordingReader:
    """Reads one recording file. `truncated` and `complete_bytes` (the length of its
    whole members) are known once `lines()` or `records()` has been read to the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.truncated = False
        self.complete_bytes = 0
        self._decoder = msgspec.json.Decoder(Record)

    def records(self) -> Iterator[Record]:
        for number, line in enumerate(self.lines(), start=1):
            try:
                yield self._decoder.decode(line)
            except msgspec.DecodeError as exc:
                raise RecordingError(f"{self.path}: record {number}: {exc}") from None

    def lines(self) -> Iterator[bytes]:
        pending = b""
        with open(self.path, "rb") as handle:
            for data in self._decompressed(handle):
                *complete, pending = (pending + data).split(b"\n")
                yield from complete
        if pending and not self.truncated:
            raise RecordingError(f"{self.path}: the last record has no line break")

    def _decompressed(self, handle: BinaryIO) -> Iterator[bytes]:
        decompressor = zlib.decompressobj(_GZIP_WBITS)
        consumed = 0  # bytes of the file fed to finished members and the current one
        in_member = False
        while chunk := handle.read(_READ_CHUNK):
            while chunk:
                in_member = True
                try:
                    yield decompressor.decompress(chunk)
                except zlib.error as exc:
                    raise RecordingError(
                        f"{self.path}: damaged gzip data after byte {self.complete_bytes}: {exc}"
                    ) from None
                if not decompressor.eof:
                    consumed += len(chunk)
                    break
                # A member ended inside the chunk; the rest starts the next one.
                rest = decompressor.unused_data
                consumed += len(chunk) - len(rest)
                self.complete_bytes = consumed
                decompressor = zlib.decompressobj(_GZIP_WBITS)
                in_member = False
                chunk = rest
        self.truncated = in_member


def read_records(path: Path) -> Iterator[Record]:
    """Every record of a recording file, in order (see `RecordingReader`)."""
    return RecordingReader(path).records()
