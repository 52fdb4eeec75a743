"""The recorder's hand-off queue and its writer thread.

The bid path copies its capture's record into a bounded ring of memory (`RecordRing` in
`_speedups.c`; see `record.py` for what a record holds) and goes on: no lock, no wake-up,
and nothing of the request kept, so its objects are freed at once where they were made.
The writer thread wakes every `drain_seconds` (`WriterPolicy`), or as soon as the queue is
half full, takes what is queued, encodes, redacts and compresses it, and writes files: the
event loop never waits on a disk, a compressor or an encoder. Waking on a timer rather
than per record is what keeps the hand-off cheap: signalling a thread costs a lock and,
worse, a GIL switch per request. Without the compiled module the queue is a deque of
entries (`Entry`), bounded the same way.

The thread works in chunks of `CHUNK_RECORDS`, and the compiled encoder reads and writes a
chunk with the GIL let go, as ISA-L compresses it: the event loop never waits behind a
chunk's scanning, encoding or compression. A longer drain interval costs fewer passes:
0.2 s rather than 0.05 s took the writer 3.7 rather than 4.3 µs a record (measured on the
benchmark); the queue's memory and what a crash may lose grow with it.
"""

from __future__ import annotations

import logging
import os
import sys
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
from bidder.recording.speedups import RecordRing, compiled
from bidder.telemetry import Metrics, Throttle

CHUNK_RECORDS: Final = 256
# What an entry's fixed fields count for against the queue's bytes (the ring's record head
# and its strings, about).
_ENTRY_OVERHEAD: Final = 128

logger = logging.getLogger("bidder.recording")


class CaptureQueue:
    """Bounded hand-off from the event loop to the writer: at most `capacity` records and
    `capacity_bytes` bytes of them; full, it drops and counts.

    With the compiled module, the records are copied into its `ring` (`RecordRing`) by
    its `enqueue`, in C, and the bid path's objects are freed at once; without it, the
    entries made of the captures are kept in a deque."""

    def __init__(self, capacity: int, capacity_bytes: int) -> None:
        self.capacity = capacity
        self.capacity_bytes = capacity_bytes
        self.wake = threading.Event()
        self._entry = EntryMaker()
        self._throttle = Throttle(interval=10.0)
        self._refused = 0  # written by the event loop only
        self._items: deque[Entry] = deque()
        self._bytes = 0
        self.ring: RecordRing | None = None
        self.put: Callable[[Capture], None] = self._put
        if compiled is not None:
            self.ring = compiled.RecordRing(capacity_bytes, capacity, self.wake.set)
            # No Python frame between the bid path and the ring, which saves 0.6-1 µs a
            # request in place. It leaves all but the common case to `_put`.
            self.put = self._entry.hand_off(self.ring, self._put)

    @property
    def dropped(self) -> int:
        """Records not queued: no room, or no record could be made of the capture."""
        return self._refused + (self.ring.dropped if self.ring is not None else 0)

    def _put(self, capture: Capture) -> None:
        try:
            self.put_entry(self._entry(capture))
        except Exception:  # a capture that cannot be recorded must not fail the bid path
            self._refused += 1
            if self._throttle.allow("entry"):
                logger.warning("a record could not be made of a request", exc_info=True)

    def put_entry(self, entry: Entry) -> None:
        """Queues `entry`, or counts it as dropped when there is no room."""
        if self.ring is not None:
            self.ring.put(entry)  # which counts it when there is no room
            return
        size = _entry_bytes(entry)
        depth = len(self._items)
        if depth >= self.capacity or self._bytes + size > self.capacity_bytes:
            self._refused += 1
            return
        self._items.append(entry)
        self._bytes += size
        if depth + 1 == max(1, self.capacity // 2) or (
            self._bytes >= self.capacity_bytes // 2 > self._bytes - size
        ):
            self.wake.set()

    def pop(self) -> Entry | None:
        """The oldest record queued, taken out; None when there is none (the writer's side)."""
        if self.ring is not None:
            entry: Entry | None = self.ring.pop(Entry)
            return entry
        if not self._items:
            return None
        entry = self._items.popleft()
        self._bytes -= _entry_bytes(entry)
        return entry

    def __len__(self) -> int:
        return len(self.ring) if self.ring is not None else len(self._items)


def _entry_bytes(entry: Entry) -> int:
    """What an entry counts for against the queue's bytes: its parts, as the ring's."""
    return len(entry.body) + len(entry.headers) + len(entry.imps) + _ENTRY_OVERHEAD


@dataclass(frozen=True)
class WriterPolicy:
    """How the writer works: the limits of one file (bytes of records before compression,
    seconds open), how often its data is flushed and how often the writer takes what is
    queued (a crash loses at most the records of those two intervals), and how much nicer
    than the event loop its thread runs."""

    max_bytes: int
    max_seconds: float
    flush_seconds: float
    drain_seconds: float = 0.2
    # The writer thread's niceness: 0 leaves it as the process's.
    writer_nice: int = 0


class RecordWriter:
    """The writer thread: drains the queue into rotating recording files in `directory`.

    `on_closed` is called (in the writer thread) with each file once it is closed.
    """

    def __init__(
        self,
        queue: CaptureQueue,
        directory: Path,
        encoder: RecordEncoder,
        policy: WriterPolicy,
        metrics: Metrics,
        on_closed: Callable[[Path], None] = lambda _: None,
    ) -> None:
        self.queue = queue
        self.directory = directory
        self.encoder = encoder
        self.policy = policy
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
        _lower_priority(self.policy.writer_nice)
        queue = self.queue
        while True:
            stopping = self._stopping.is_set()
            queue.wake.wait(self.policy.drain_seconds)
            queue.wake.clear()
            depth = len(queue)
            self.metrics.recorder_queue_depth.set(depth)
            self._write(depth)
            self._report_drops()
            self._rotate(time.monotonic(), stopping)
            if stopping and not len(queue):
                return

    def _write(self, count: int) -> None:
        """Writes `count` records of the queue (those there when the pass began: later ones
        wait for the next), in chunks, each up to what fills the open file."""
        while count > 0:
            data, taken, records = self.encoder.encode_queued(
                self.queue, min(count, CHUNK_RECORDS), self._room(), self._encoding_failed
            )
            if not taken:
                return  # the queue is empty: a test's consumer took them
            count -= taken
            if records:
                self._append(data, records)

    def _encoding_failed(self) -> None:
        self._failed("a record could not be encoded", 1)

    def _room(self) -> int:
        """Bytes of records the open file takes before it is closed."""
        written = self._file.data_bytes if self._file is not None else 0
        return self.policy.max_bytes - written

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
        if self._file.data_bytes >= self.policy.max_bytes:
            self._close()

    def _rotate(self, now: float, closing: bool) -> None:
        file = self._file
        if file is None:
            return
        if closing or now - file.opened_at >= self.policy.max_seconds:
            self._close()
        elif file.member_started is not None and (
            now - file.member_started >= self.policy.flush_seconds
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


def _lower_priority(nice: int) -> None:
    """Makes the calling thread `nice` steps nicer than the process, where Linux can (a
    thread's id names it alone there): a pass of the writer, a few milliseconds of CPU
    without the GIL, then gives way to the event loop whenever the loop has work, instead
    of sharing the core with it, which put the loop's p99 at half load up to 2-3 times
    higher with 0.2 s passes (measured on the benchmark)."""
    if nice <= 0 or sys.platform != "linux":
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + nice)
    except OSError:
        logger.warning("the recorder's writer could not lower its priority", exc_info=True)
