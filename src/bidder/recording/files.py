"""Recording files: their names, how one is written, and whose a file in the directory is.

A file is written as `<name>.jsonl.gz.partial` and renamed to `<name>.jsonl.gz` when it is
closed, so whatever ends in `.jsonl.gz` is complete. Its data is a sequence of gzip
members, one per flush: a process that dies loses only what it had not flushed, and
what it had is readable (`gzip` and `zcat` read concatenated members as one stream).

Names start with the file's start time in UTC, so they sort by time, then the writer's
process id and a random token, so that neither the workers of one host nor hosts whose
processes share a pid (containers) write the same name:
`20261125T101034.123456Z-4242-9f2c1ab0-000003.jsonl.gz`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import secrets
import zlib
from pathlib import Path
from typing import BinaryIO, Final

from isal import isal_zlib

from bidder.traffic.recordings import gzip_members

CLOSED_SUFFIX: Final = ".jsonl.gz"
PARTIAL_SUFFIX: Final = CLOSED_SUFFIX + ".partial"
_TIME_FORMAT: Final = "%Y%m%dT%H%M%S.%fZ"
_NAME: Final = re.compile(
    r"^(?P<start>\d{8}T\d{6}\.\d{6}Z)-(?P<pid>\d+)-(?P<token>[0-9a-f]+)-\d+\.jsonl\.gz"
)
# ISA-L's level 1 compresses a record in about a fifth of zlib's level-1 time, into less
# space; its output is ordinary gzip.
_GZIP_LEVEL: Final = 1
_GZIP_WBITS: Final = 16 + isal_zlib.MAX_WBITS
# Read at a time when cutting a dead process's file: at most about a thousand times as much
# decompressed output is held at once (deflate's best ratio).
_CUT_READ_BYTES: Final = 64 * 1024


class FileNamer:
    """Names the files of one process: its pid and a token drawn once, and a sequence."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.token = secrets.token_hex(4)
        self._sequence = 0

    def next(self, directory: Path, started: float) -> Path:
        self._sequence += 1
        stamp = datetime.datetime.fromtimestamp(started, datetime.UTC).strftime(_TIME_FORMAT)
        return directory / f"{stamp}-{self.pid}-{self.token}-{self._sequence:06d}{CLOSED_SUFFIX}"

    def owns(self, path: Path) -> bool:
        """Whether `path` is this process's, or a dead process's that no one else will
        finish or upload: anything named by a live process is left to it."""
        match = _NAME.match(path.name)
        if match is None:
            return False
        pid = int(match["pid"])
        if pid == self.pid:
            return True
        return not _alive(pid)


def start_time(path: Path) -> datetime.datetime | None:
    """When the recording named `path` began (UTC), or None for a name not a recorder's."""
    match = _NAME.match(path.name)
    if match is None:
        return None
    return datetime.datetime.strptime(match["start"], _TIME_FORMAT).replace(tzinfo=datetime.UTC)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class RecordingFile:
    """One open recording. `write` compresses into the current gzip member, `flush` ends
    it and hands its bytes to the operating system, `close` renames the file."""

    def __init__(self, path: Path, opened_at: float) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.opened_at = opened_at  # monotonic, for rotation by age
        # Bytes of records written, before compression: the compressor holds back its output
        # in blocks of a hundred kilobytes or more, so the file's size lags behind.
        self.data_bytes = 0
        self.member_started: float | None = None  # monotonic, while a member is open
        self._file: BinaryIO = open(self.partial, "xb")  # noqa: SIM115 (closed in close())
        self._compressor: isal_zlib.Compress | None = None

    def write(self, data: bytes, now: float) -> None:
        if self._compressor is None:
            self._compressor = isal_zlib.compressobj(_GZIP_LEVEL, isal_zlib.DEFLATED, _GZIP_WBITS)
            self.member_started = now
        self.data_bytes += len(data)
        self._file.write(self._compressor.compress(data))

    def flush(self) -> None:
        """Ends the gzip member being written, if any, and writes the file's buffer out."""
        if self._compressor is None:
            return
        self._file.write(self._compressor.flush())
        self._compressor = None
        self.member_started = None
        self._file.flush()

    def close(self) -> Path:
        try:
            self.flush()
        finally:
            self._file.close()
        os.replace(self.partial, self.path)
        return self.path

    def abandon(self) -> None:
        """After a failed write: close the handle, leave the `.partial` file as it is
        (what was flushed is readable), never raise."""
        with contextlib.suppress(OSError):
            self._file.close()


def cut_to_complete_members(path: Path) -> int:
    """Cuts `path`, a file of gzip members left by a process that stopped while writing
    one, after its last complete member, so that what is kept is a gzip file any reader
    takes whole; returns the bytes kept. A member that does not decompress (damage rather
    than a cut) ends what is kept too."""
    kept = 0
    with path.open("r+b") as file:
        with contextlib.suppress(zlib.error):
            for _, member_end in gzip_members(file, _CUT_READ_BYTES):
                if member_end is not None:
                    kept = member_end
        file.truncate(kept)
    return kept
