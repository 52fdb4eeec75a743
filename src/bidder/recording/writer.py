"""The recorder's hand-off queue and its writer thread.

The bid path appends an entry made of its capture (see `record.py`) to a bounded deque and
goes on: no lock, no wake-up (a deque's append is atomic under the GIL). The
writer thread wakes every `DRAIN_INTERVAL`, or as soon as the queue is half full, takes
everything queued, encodes, redacts and compresses it, and writes files: the event loop
never waits on a disk, a compressor or an encoder. Waking on a timer rather than per
record is what keeps the hand-off cheap: signalling a thread costs a lock and, worse, a
GIL switch per request.

The thread works in chunks of `CHUNK_RECORDS` and holds the GIL as little as it can: the
compiled encoder reads a chunk's entries with it and writes their lines without it, and
ISA-L compresses without it, so the event loop never waits behind a chunk's scanning,
encoding or compression. (Chunks of 64 with a `sleep(0)` between them cost the writer a
fifth more CPU per record, in Python's per-chunk work and thread switches.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bidder.recording.files import (
    CLOSED_SUFFIX,
    PARTIAL_SUFFIX,
    FileNamer,
    RecordingFile,
    cut_to_complete_members,
)
from bidder.recording.record import Capture, Entry, EntryMaker, RecordEncoder
from bidder.telemetry import Metrics, Throttle

DRAIN_INTERVAL: Final = 0.05
CHUNK_RECORDS: Final = 256

logger = logging.getLogger("bidder.recording")


class CaptureQueue:
    """Bounded hand-off from the event loop to the writer, of entries made of the bid path's
    captures as they come; full, it drops and counts."""

    __slots__ = ("_entry", "_half", "_items", "_throttle", "capacity", "dropped", "put", "wake")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.dropped = 0  # written by the event loop only
        self.wake = threading.Event()
        self._items: deque[Entry] = deque()
        self._half = max(1, capacity // 2)
        self._entry = EntryMaker()
        self._throttle = Throttle(interval=10.0)
        # In C when it can be: no Python frame between the bid path and the queue, which
        # saves 0.6-1 µs a request in place. It leaves all but the common case to `_put`.
        self.put: Callable[[Capture], None] = self._entry.hand_off(
            self._items, capacity, self._half, self.wake.set, self._put
        )

    def _put(self, capture: Capture) -> None:
        items = self._items
        depth = len(items)
        if depth >= self.capacity:
            self.dropped += 1
            return
        try:
            entry = self._entry(capture)
        except Exception:  # a capture that cannot be recorded must not fail the bid path
            self.dropped += 1
            if self._throttle.allow("entry"):
                logger.warning("a record could not be made of a request", exc_info=True)
            return
        items.append(entry)
        if depth == self._half:
            self.wake.set()

    def take(self) -> list[Entry]:
        """Everything queued so far (the writer's side)."""
        items = self._items
        return [items.popleft() for _ in range(len(items))]

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class FileRotation:
    """Limits of one file (bytes of records before compression, seconds open), and how
    often its data is flushed: a crash loses at most that much."""

    max_bytes: int
    max_seconds: float
    flush_seconds: float


class RecordWriter:
    """The writer thread: drains the queue into rotating recording files in `directory`.

    `on_closed` is called (in the writer thread) with each file once it is closed.
    """

    def __init__(
        self,
        queue: CaptureQueue,
        directory: Path,
        encoder: RecordEncoder,
        rotation: FileRotation,
        metrics: Metrics,
        on_closed: Callable[[Path], None] = lambda _: None,
    ) -> None:
        self.queue = queue
        self.directory = directory
        self.encoder = encoder
        self.rotation = rotation
        self.metrics = metrics
        self.on_closed = on_closed
        self.namer = FileNamer()
        self._file: RecordingFile | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bidder-recorder", daemon=True)
        self._throttle = Throttle(interval=10.0)
        self._dropped_reported = 0

    def start(self) -> None:
        """Creates the directory, closes what dead processes left open in it, and starts
        the thread. Such a file is cut after its last complete gzip member (the one being
        written when the process stopped is cut short, and a reader would fail on it), or
        removed when it holds none."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for partial in sorted(self.directory.glob(f"*{PARTIAL_SUFFIX}")):
            if not self.namer.owns(partial):
                continue
            closed = partial.with_name(partial.name.removesuffix(".partial"))
            try:
                if cut_to_complete_members(partial):
                    partial.replace(closed)
                    message = "closed a recording left by a stopped process"
                else:
                    partial.unlink()
                    message = "removed an empty recording left by a stopped process"
            except FileNotFoundError:
                continue  # another worker starting at the same time closed it
            logger.warning(message, extra={"file": closed.name})
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Writes what is queued, closes the open file and ends the thread; False if that
        took longer than `timeout` (the thread is then left to finish on its own)."""
        self._stopping.set()
        self.queue.wake.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def closed_files(self) -> list[Path]:
        """Closed recordings in the directory that this process may upload, oldest first."""
        return sorted(p for p in self.directory.glob(f"*{CLOSED_SUFFIX}") if self.namer.owns(p))

    def _run(self) -> None:
        queue = self.queue
        while True:
            stopping = self._stopping.is_set()
            queue.wake.wait(DRAIN_INTERVAL)
            queue.wake.clear()
            self.metrics.recorder_queue_depth.set(len(queue))
            self._write(queue.take())
            self._report_drops()
            self._rotate(time.monotonic(), stopping)
            if stopping and not len(queue):
                return

    def _write(self, entries: list[Entry]) -> None:
        at, count = 0, len(entries)
        while at < count:
            at = self._write_chunk(entries, at, min(count, at + CHUNK_RECORDS))

    def _write_chunk(self, entries: list[Entry], at: int, end: int) -> int:
        """Writes `entries[at:end]`, or as many as fill the open file; returns where it
        stopped."""
        data, reached, records = self.encoder.encode_chunk(
            entries, at, end, self._room(), self._encoding_failed
        )
        if records:
            self._append(data, records)
        return reached

    def _encoding_failed(self) -> None:
        self._failed("a record could not be encoded", 1)

    def _room(self) -> int:
        """Bytes of records the open file takes before it is closed."""
        written = self._file.data_bytes if self._file is not None else 0
        return self.rotation.max_bytes - written

    def _append(self, data: bytes, records: int) -> None:
        now = time.monotonic()
        try:
            if self._file is None:
                self._file = RecordingFile(self.namer.next(self.directory, time.time()), now)
            self._file.write(data, now)
        except OSError:
            self._failed("a recording could not be written", records)
            if self._file is not None:
                self._file.abandon()
                self._file = None
            return
        self.metrics.recorder_written(records)
        if self._file.data_bytes >= self.rotation.max_bytes:
            self._close()

    def _rotate(self, now: float, closing: bool) -> None:
        file = self._file
        if file is None:
            return
        if closing or now - file.opened_at >= self.rotation.max_seconds:
            self._close()
        elif file.member_started is not None and (
            now - file.member_started >= self.rotation.flush_seconds
        ):
            try:
                file.flush()
            except OSError:
                self._failed("a recording could not be flushed", 0)
                file.abandon()
                self._file = None

    def _close(self) -> None:
        file = self._file
        assert file is not None
        self._file = None
        try:
            closed = file.close()
        except OSError:
            self._failed("a recording could not be closed", 0)
            file.abandon()
            return
        self.on_closed(closed)

    def _report_drops(self) -> None:
        dropped = self.queue.dropped
        if dropped != self._dropped_reported:
            self.metrics.recorder_dropped(dropped - self._dropped_reported)
            self._dropped_reported = dropped

    def _failed(self, message: str, records: int) -> None:
        """Called in an `except` block: the records are counted as dropped and the error
        logged (at most every ten seconds per kind)."""
        if records:
            self.metrics.recorder_dropped(records)
        if self._throttle.allow(message):
            logger.warning(message, exc_info=True)
