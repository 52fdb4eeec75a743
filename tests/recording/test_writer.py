"""The writer thread and its files: rotation, flushes, a crash's tail, a full queue."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from bidder.recording import writer as writer_module
from bidder.recording.files import FileNamer, cut_to_complete_members, start_time
from bidder.recording.record import Entry, EntryMaker, RecordEncoder
from bidder.recording.speedups import compiled
from bidder.recording.writer import CaptureQueue, RecordWriter, WriterPolicy
from bidder.telemetry import Metrics
from bidder.traffic.recordings import RecordingError, read_recordings
from tests.conftest import PROJECT_ROOT
from tests.recording.helpers import (
    HEADERS,
    captures,
    closed_files,
    read_directory,
    read_file,
    wait_until,
)

LARGE = 1 << 28


def writer_for(directory: Path, policy: WriterPolicy, queue_size: int = 100_000) -> RecordWriter:
    queue = CaptureQueue(queue_size, LARGE)
    return RecordWriter(queue, directory, RecordEncoder(None), policy, Metrics(CollectorRegistry()))


def sent_ids(count: int, seed: int = 1) -> list[str]:
    return [orjson.loads(capture[2])["id"] for capture in captures(count, seed)]


def counted(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value("bidder_recorder_records_total", {"outcome": outcome})
    assert value is not None
    return value


def test_files_rotate_by_size_and_each_is_complete_on_its_own(tmp_path: Path) -> None:
    writer = writer_for(tmp_path, WriterPolicy(max_bytes=4096, max_seconds=3600, flush_seconds=60))
    reported: list[Path] = []
    writer.on_closed = reported.append
    writer.start()
    for capture in captures(400):
        writer.queue.put(capture)
    assert writer.stop(timeout=30)
    files = closed_files(tmp_path)
    assert len(files) > 2
    assert reported == files
    assert not list(tmp_path.glob("*.partial"))
    for path in files[:-1]:
        # Closed at the first record that takes it to the limit.
        records = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
        assert sum(map(len, records)) >= 4096
        assert sum(map(len, records[:-1])) < 4096
    # Each file alone decompresses and parses; together they hold every record once, in order.
    assert [record["id"] for record in read_directory(tmp_path)] == sent_ids(400)
    assert counted(writer.metrics, "written") == 400
    assert counted(writer.metrics, "dropped") == 0


def test_files_rotate_by_age(tmp_path: Path) -> None:
    writer = writer_for(tmp_path, WriterPolicy(max_bytes=LARGE, max_seconds=0.2, flush_seconds=60))
    writer.start()
    first, second = captures(10), captures(10, seed=2)
    for capture in first:
        writer.queue.put(capture)
    wait_until(lambda: len(closed_files(tmp_path)) == 1)
    for capture in second:
        writer.queue.put(capture)
    assert writer.stop(timeout=30)
    files = closed_files(tmp_path)
    assert len(files) == 2
    assert [r["id"] for r in read_file(files[0])] == sent_ids(10)
    assert [r["id"] for r in read_file(files[1])] == sent_ids(10, seed=2)


def test_names_sort_by_start_time_and_carry_pid_and_token(tmp_path: Path) -> None:
    namer = FileNamer()
    first = namer.next(tmp_path, 1764547200.25)
    second = namer.next(tmp_path, 1764547260.0)
    assert first.name.startswith(f"20251201T000000.250000Z-{os.getpid()}-{namer.token}-")
    assert first.name.endswith(".jsonl.gz")
    assert sorted([second, first]) == [first, second]
    started = start_time(first)
    assert started is not None
    assert started.timestamp() == 1764547200.25
    assert start_time(tmp_path / "notes.jsonl.gz") is None
    assert FileNamer().token != namer.token


def test_a_flush_makes_a_member_readable_while_the_file_is_open(tmp_path: Path) -> None:
    policy = WriterPolicy(max_bytes=LARGE, max_seconds=3600, flush_seconds=0.05)
    writer = writer_for(tmp_path, policy)
    writer.start()
    for capture in captures(30):
        writer.queue.put(capture)
    wait_until(lambda: partial_ids(tmp_path) == sent_ids(30))
    assert writer.stop(timeout=30)
    assert [r["id"] for r in read_directory(tmp_path)] == sent_ids(30)


def partial_ids(directory: Path) -> list[str | None]:
    """The ids readable so far in the open file."""
    try:
        recordings = read_recordings(directory.glob("*.jsonl.gz.partial"), max_records=1000)
    except RecordingError:
        return []  # nothing flushed yet
    return [request.id for request in recordings.requests]


def test_a_killed_recorder_leaves_a_readable_prefix_which_the_next_one_closes(
    tmp_path: Path,
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.recording.crash_writer", str(tmp_path)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "flushed 100"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    (partial,) = tmp_path.glob("*.jsonl.gz.partial")
    assert not closed_files(tmp_path)
    recordings = read_recordings([partial], max_records=100_000)
    ids = [request.id for request in recordings.requests]
    # Everything flushed before the kill is there, in order; after it, whatever was flushed.
    assert ids[:100] == sent_ids(100)
    assert set(ids[100:]) <= set(sent_ids(50, seed=2))

    # The dead process's file is closed by the next recorder to start in the directory.
    writer = writer_for(tmp_path, WriterPolicy(max_bytes=LARGE, max_seconds=3600, flush_seconds=1))
    writer.start()
    assert writer.stop(timeout=30)
    (adopted,) = closed_files(tmp_path)
    assert adopted.name == partial.name.removesuffix(".partial")
    assert writer.closed_files() == [adopted]
    # Cut after its last complete member: a strict reader takes it whole.
    lines = gzip.decompress(adopted.read_bytes()).splitlines()
    kept = [orjson.loads(line)["id"] for line in lines]
    assert kept[:100] == sent_ids(100)
    assert kept == ids[: len(kept)]


def _members(*texts: bytes) -> bytes:
    return b"".join(gzip.compress(text) for text in texts)


def test_a_file_is_cut_after_its_last_complete_member(tmp_path: Path) -> None:
    whole = _members(b'{"id":"1"}\n', b'{"id":"2"}\n')
    cut_short = gzip.compress(b'{"id":"3"}\n' * 1000)
    path = tmp_path / "recording.jsonl.gz.partial"
    for tail in (cut_short[: len(cut_short) // 2], cut_short[:5], b"\x00" * 40):
        path.write_bytes(whole + tail)
        assert cut_to_complete_members(path) == len(whole)
        assert path.read_bytes() == whole
    path.write_bytes(whole)
    assert cut_to_complete_members(path) == len(whole), "a whole file is left as it is"


def test_a_dead_processs_file_without_a_complete_member_is_removed(tmp_path: Path) -> None:
    dead = FileNamer()
    dead.pid = _a_dead_pid()
    name = dead.next(tmp_path, 1764547200.0).name
    partial = tmp_path / (name + ".partial")
    partial.write_bytes(gzip.compress(b'{"id":"1"}\n' * 1000)[:30])
    writer = writer_for(tmp_path, WriterPolicy(max_bytes=LARGE, max_seconds=3600, flush_seconds=1))
    writer.start()
    assert writer.stop(timeout=30)
    assert list(tmp_path.iterdir()) == []


def _a_dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


def test_a_live_processs_files_are_left_to_it(tmp_path: Path) -> None:
    parent = FileNamer()
    name = parent.next(tmp_path, 1764547200.0).name
    alive = tmp_path / name.replace(f"-{os.getpid()}-", f"-{os.getppid()}-")
    alive.with_name(alive.name + ".partial").write_bytes(b"")
    alive.write_bytes(b"")
    writer = writer_for(tmp_path, WriterPolicy(max_bytes=LARGE, max_seconds=3600, flush_seconds=1))
    writer.start()
    assert writer.stop(timeout=30)
    assert alive.with_name(alive.name + ".partial").exists()
    assert writer.closed_files() == []


@pytest.fixture(params=["compiled", "python"])
def hand_off(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which queue the test makes: the compiled module's ring and `enqueue`, or the
    Python's deque alone (as without a C compiler)."""
    if request.param == "compiled" and compiled is None:
        pytest.skip("the compiled module is not built")
    if request.param == "python":
        monkeypatch.setattr(writer_module, "compiled", None)
    return str(request.param)


def taken(queue: CaptureQueue) -> list[Entry]:
    """Everything queued, taken out oldest first."""
    entries = []
    while (entry := queue.pop()) is not None:
        entries.append(entry)
    return entries


def test_a_full_queue_drops_and_counts_without_waiting(tmp_path: Path, hand_off: str) -> None:
    queue = CaptureQueue(capacity=3, capacity_bytes=LARGE)
    made = captures(5)
    for capture in made:
        queue.put(capture)
    assert len(queue) == 3
    assert queue.dropped == 2
    assert taken(queue) == [EntryMaker()(capture) for capture in made[:3]]
    metrics = Metrics(CollectorRegistry())
    policy = WriterPolicy(max_bytes=LARGE, max_seconds=3600, flush_seconds=1)
    writer = RecordWriter(queue, tmp_path, RecordEncoder(None), policy, metrics)
    writer.start()
    queue.put(made[3])
    assert writer.stop(timeout=30)
    assert counted(metrics, "dropped") == 2
    assert counted(metrics, "written") == 1


def test_the_writer_is_woken_once_the_queue_is_half_full(hand_off: str) -> None:
    queue = CaptureQueue(capacity=4, capacity_bytes=LARGE)
    made = captures(2)
    queue.put(made[0])
    assert not queue.wake.is_set()
    queue.put(made[1])
    assert queue.wake.is_set()
    assert len(queue) == 2


def test_a_queue_full_of_bytes_drops_and_wakes_the_writer_at_half(hand_off: str) -> None:
    made = [(*capture[:2], capture[2] + b" " * 4000, *capture[3:]) for capture in captures(6)]
    queue = CaptureQueue(capacity=100, capacity_bytes=16 * 1024)
    queue.put(made[0])  # type: ignore[arg-type]
    assert not queue.wake.is_set()
    queue.put(made[1])  # type: ignore[arg-type]
    assert queue.wake.is_set()
    for capture in made[2:]:
        queue.put(capture)  # type: ignore[arg-type]
    assert (len(queue), queue.dropped) == (3, 3)
    assert [entry.body for entry in taken(queue)] == [capture[2] for capture in made[:3]]
    queue.put(made[5])  # type: ignore[arg-type]
    assert [entry.body for entry in taken(queue)] == [made[5][2]]


@pytest.mark.skipif(compiled is None, reason="the compiled module is not built")
def test_records_go_round_the_ring_whole_and_in_order() -> None:
    """Records put and taken in turns many times round a small ring, taken as entries or
    as lines: each comes out as it went in, whether it was written up to the ring's end
    or after a skip to its start; a record with no room is dropped, never overwrites."""
    queue = CaptureQueue(capacity=1000, capacity_bytes=16 * 1024)
    assert queue.ring is not None
    made = captures(40)
    encoder = RecordEncoder(None)
    lines = [encoder.encode(EntryMaker()(capture)) for capture in made]
    sent: list[bytes] = []
    received: list[bytes] = []
    for turn in range(400):
        for index in range(turn % 4 + 1):
            at = (turn * 3 + index) % len(made)
            dropped = queue.dropped
            queue.put(made[at])
            if queue.dropped == dropped:
                sent.append(lines[at])
        if turn % 2:
            entry = queue.pop()
            received.extend([] if entry is None else [encoder.encode(entry)])
        else:
            data, taken_, written = encoder.encode_queued(queue, turn % 3 + 1, LARGE, _fail)
            assert taken_ == written
            received.append(data)
    received.append(encoder.encode_queued(queue, 1000, LARGE, _fail)[0])
    assert len(queue) == 0
    assert 0 < queue.dropped < 400
    assert b"".join(received) == b"".join(sent)
    assert sum(map(len, sent)) > 50 * queue.capacity_bytes  # many times round


def _fail() -> None:
    raise AssertionError("no record here fails to encode")


def test_a_capture_the_compiled_module_leaves_to_the_python_is_queued_all_the_same(
    hand_off: str,
) -> None:
    arrival, _, body, elapsed, version, verdict = captures(1)[0]
    # A header sent twice is left to the Python, which records its last value.
    headers = [*HEADERS, (b"x-openrtb-version", b"2.5")]
    queue = CaptureQueue(capacity=4, capacity_bytes=LARGE)
    queue.put((arrival, headers, body, elapsed, version, verdict))
    [entry] = taken(queue)
    assert orjson.loads(entry.headers) == {
        "content-type": "application/json",
        "x-openrtb-version": "2.5",
    }
    assert entry.body == body
    assert queue.dropped == 0


def test_a_record_that_cannot_be_encoded_is_dropped_and_the_rest_written(
    tmp_path: Path, hand_off: str
) -> None:
    writer = writer_for(tmp_path, WriterPolicy(max_bytes=LARGE, max_seconds=3600, flush_seconds=1))
    good = captures(2)
    arrival, headers, body, elapsed, version, _ = good[0]
    broken = (arrival, headers, body, elapsed, version, (204, None, None, ["not a decision"]))
    writer.start()
    for capture in (good[0], broken, good[1]):
        writer.queue.put(capture)  # type: ignore[arg-type]
    assert writer.stop(timeout=30)
    assert [r["id"] for r in read_directory(tmp_path)] == sent_ids(2)
    assert counted(writer.metrics, "dropped") == 1


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own niceness is Linux's")
def test_the_writer_thread_runs_nicer_than_the_event_loop(tmp_path: Path) -> None:
    policy = WriterPolicy(max_bytes=LARGE, max_seconds=3600, flush_seconds=1, writer_nice=5)
    writer = writer_for(tmp_path, policy)
    writer.start()
    thread = writer._thread.native_id
    assert thread is not None
    expected = min(19, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + 5)
    try:
        # The thread lowers its own priority as it starts.
        wait_until(lambda: os.getpriority(os.PRIO_PROCESS, thread) == expected)
    finally:
        assert writer.stop(timeout=30)
