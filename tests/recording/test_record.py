"""The record a capture becomes: the shared recording format, line for line."""

from __future__ import annotations

import base64
import gzip
import hmac
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bidder.asgi import Headers
from bidder.decision.policy import ImpDecision, NoBidReason
from bidder.openrtb import decode_bid_request
from bidder.openrtb.model import BidRequest, Imp
from bidder.recording import record, writer
from bidder.recording.record import (
    ERROR_REASON,
    Capture,
    Entry,
    EntryMaker,
    RecordEncoder,
    Verdict,
    fixed,
)
from bidder.recording.redaction import Redactor
from bidder.recording.speedups import compiled
from bidder.recording.writer import CaptureQueue
from bidder.traffic.recordings import read_recordings
from tests.recording.helpers import HEADERS, REQUESTS, captures, formatted

REQUEST = {
    "id": "r1",
    "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}, {"id": "2", "banner": {"w": 728}}],
    "device": {"ip": "203.0.113.7", "os": "ios"},
}


def encode(
    body: bytes, verdict: Verdict, redactor: Redactor | None = None, headers: Headers = HEADERS
) -> dict[str, Any]:
    entry = EntryMaker()((1764547200.5, headers, body, 0.00042, "v@3", verdict))
    line = RecordEncoder(redactor).encode(entry)
    assert line.endswith(b"\n")
    assert b"\n" not in line[:-1]
    record: dict[str, Any] = orjson.loads(line)
    return record


def test_a_bid_records_each_impression_with_price_score_and_reason() -> None:
    body = orjson.dumps(REQUEST)
    request = decode_bid_request(body)
    assert request.imp is not None
    decisions = [
        ImpDecision(request.imp[0], 0.31, 2.5),
        ImpDecision(request.imp[1], 0.2, 0.9, reason=NoBidReason.BELOW_FLOOR),
    ]
    record = encode(body, (200, request, None, decisions))
    assert record == {
        "v": 1,
        "id": "r1",
        "ts": 1764547200.5,
        "headers": {"content-type": "application/json", "x-openrtb-version": "2.6"},
        "body": REQUEST,
        "status": 200,
        "latency_ms": 0.42,
        "model_version": "v@3",
        "decision": {
            "outcome": "bid",
            "reason": None,
            "imps": [
                {"id": "1", "bid": True, "price": 2.5, "score": 0.31, "reason": None},
                {"id": "2", "bid": False, "price": None, "score": 0.2, "reason": "below_floor"},
            ],
        },
    }


def test_a_request_level_no_bid_gives_every_impression_its_reason() -> None:
    body = orjson.dumps(REQUEST)
    record = encode(body, (204, decode_bid_request(body), "deadline", None))
    assert record["decision"] == {
        "outcome": "no_bid",
        "reason": "deadline",
        "imps": [
            {"id": "1", "bid": False, "price": None, "score": None, "reason": "deadline"},
            {"id": "2", "bid": False, "price": None, "score": None, "reason": "deadline"},
        ],
    }
    failed = encode(body, (204, decode_bid_request(body), "internal_error", None))
    assert failed["decision"]["outcome"] == "error"


def test_a_rejected_body_that_is_not_json_is_kept_as_base64() -> None:
    record = encode(b"\xff\xfe not json", (400, None, None, None))
    assert "body" not in record
    assert base64.b64decode(record["body_b64"]) == b"\xff\xfe not json"
    assert record["id"] == ""
    assert record["decision"] == {"outcome": "invalid", "reason": None, "imps": []}


def test_a_rejected_json_body_is_embedded_with_its_id() -> None:
    body = b'{"id": "bad-1",\n "imp": "not an array"}'
    record = encode(body, (400, None, None, None))
    assert record["body"] == {"id": "bad-1", "imp": "not an array"}
    assert record["id"] == "bad-1"


def test_gzip_that_did_not_decompress_keeps_its_content_encoding() -> None:
    data = gzip.compress(b'{"id": "z"}')[:-4]
    headers = [*HEADERS, (b"content-encoding", b"gzip"), (b"user-agent", b"exchange")]
    record = encode(data, (400, None, None, None), headers=headers)
    assert base64.b64decode(record["body_b64"]) == data
    assert record["headers"] == {
        "content-type": "application/json",
        "x-openrtb-version": "2.6",
        "content-encoding": "gzip",
    }


def test_with_redaction_identifiers_go_and_unreadable_bodies_are_withheld() -> None:
    body = orjson.dumps(REQUEST)
    record = encode(body, (204, decode_bid_request(body), "not_ready", None), Redactor("drop"))
    assert record["body"]["device"] == {"os": "ios"}
    withheld = encode(b"garbage 203.0.113.7", (400, None, None, None), Redactor("drop"))
    assert withheld["body_b64"] == ""


def test_the_replay_reader_reads_records_as_written(tmp_path: Path) -> None:
    body = orjson.dumps(REQUEST)
    encoder, entry = RecordEncoder(None), EntryMaker()
    lines = [
        encoder.encode(
            entry((1.0, HEADERS, body, 0.001, "v", (204, decode_bid_request(body), "x", None)))
        ),
        encoder.encode(entry((2.0, HEADERS, b"\x00raw", 0.001, "v", (400, None, None, None)))),
    ]
    path = tmp_path / "r.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(lines)))
    recordings = read_recordings([path], max_records=10)
    assert [request.body for request in recordings.requests] == [body, b"\x00raw"]
    assert [request.status for request in recordings.requests] == [204, 400]


# The compiled encoder (`_speedups.c`) against `RecordEncoder.encode`, the reference.

_COMPILED = pytest.mark.skipif(compiled is None, reason="the compiled encoder is not built")
_TIMES = (
    st.floats(0, 4e9)
    | st.floats(0, 10)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0.0, 0.0005, 0.0015, 2.5e-7, 1764547200.0000005, 1e16, 2**53 / 1e6])
)
_STRINGS = st.text(max_size=12) | st.sampled_from(["default@2", "é", 'a"b', "a\\b", "\n", "\ud800"])
_BODIES = (
    st.builds(formatted, REQUESTS, st.booleans())
    | st.binary(max_size=40)
    | st.sampled_from([b"", b"\xff{}", b'{"id":"\xed\xa0\x80"}', b"[1]", b'{"id":"r"}\r\n'])
)
_ENTRIES = st.builds(
    Entry,
    request_id=st.none() | _STRINGS,
    arrival=_TIMES,
    headers=st.sampled_from([b"{}", b'{"content-type":"application/json"}']),
    body=_BODIES,
    status=st.sampled_from([200, 204, 400, 413, 415]),
    elapsed=_TIMES,
    model_version=_STRINGS,
    reason=st.none() | _STRINGS | st.sampled_from([*NoBidReason, ERROR_REASON]),
    imps=st.sampled_from(
        [b"[]", b'[{"id":"1","bid":false,"price":null,"score":null,"reason":null}]']
    ),
)
_REDACTORS: dict[str, Redactor | None] = {
    "keep": None,
    "drop": Redactor("drop"),
    "hash": Redactor("hash", b"test-key"),
}


def _reference(encoder: RecordEncoder, entries: list[Entry]) -> tuple[bytes, int]:
    """What `encode` makes of `entries`, one by one: the joined lines, and how many failed."""
    lines: list[bytes] = []
    failed = 0
    for entry in entries:
        try:
            lines.append(encoder.encode(entry))
        except Exception:
            failed += 1
    return b"".join(lines), failed


_LARGE = 1 << 28


def _queued(entries: list[Entry]) -> CaptureQueue:
    queue = CaptureQueue(len(entries) + 1, _LARGE)
    for entry in entries:
        queue.put_entry(entry)
    assert len(queue) == len(entries)
    return queue


@given(entries=st.lists(_ENTRIES, max_size=6), mode=st.sampled_from(sorted(_REDACTORS)))
@settings(max_examples=400)
def test_chunks_are_what_encode_writes_record_by_record(entries: list[Entry], mode: str) -> None:
    """Whatever the entries, the compiled encoder's lines (from the ring they were copied
    into) are `encode`'s, and it leaves `encode` what it does not take."""
    encoder = RecordEncoder(_REDACTORS[mode])
    failures: list[int] = []
    data, taken, records = encoder.encode_queued(
        _queued(entries), len(entries), 2**40, lambda: failures.append(1)
    )
    expected, failed = _reference(encoder, entries)
    assert data == expected
    assert (taken, records, len(failures)) == (len(entries), len(entries) - failed, failed)


@_COMPILED
@pytest.mark.parametrize("mode", ["keep", "drop", "hash"])
def test_the_compiled_encoder_takes_the_bid_paths_entries_whole(mode: str) -> None:
    """Decided requests (impressions bid, priced, declined by reason) never fall back to
    Python: the fallback would hide a slow path in plain sight."""
    made: list[Capture] = [
        (time.time(), HEADERS, capture[2], 0.000412, "v@3", verdict)
        for capture in captures(20)
        for verdict in _bid_path_verdicts()
    ]
    queue = CaptureQueue(len(made), _LARGE)
    for capture in made:
        queue.put(capture)
    assert queue.ring is not None
    redactor = _REDACTORS[mode]
    tree = None if redactor is None else redactor.tree
    key = None if redactor is None else redactor.hash_key
    data, count = queue.ring.encode(len(made), 2**40, tree, 1, b"internal_error", key)
    assert count == len(made)
    entries = [EntryMaker()(capture) for capture in made]
    assert data == _reference(RecordEncoder(redactor), entries)[0]


@_COMPILED
def test_hashed_identifiers_are_hashed_in_c_and_an_escaped_one_is_left_to_python() -> None:
    body = (
        b'{"id":"r1","imp":[{"id":"1","banner":{"w":300,"h":250}}],'
        b'"user":{"id":"%s"},"device":{"ip":"203.0.113.7","ifa":%s}}'
    )
    plain = body % (b"u-1", b"12345")
    escaped = body % (b"u\\u00e9", b"12345")
    redactor = Redactor("hash", b"test-key")
    entries = [
        EntryMaker()((1.0, HEADERS, each, 0.001, "v", (204, decode_bid_request(each), "x", None)))
        for each in (plain, escaped)
    ]
    queue = _queued(entries)
    assert queue.ring is not None
    data, count = queue.ring.encode(2, 2**40, redactor.tree, 1, b"e", redactor.hash_key)
    assert count == 1  # the escaped identifier's record is `pop`ped and encoded in Python
    [line] = data.splitlines()
    written = orjson.loads(line)["body"]
    assert written["user"]["id"] == hmac.digest(b"test-key", b"u-1", "sha256").hex()
    assert written["device"]["ip"] == hmac.digest(b"test-key", b"203.0.113.7", "sha256").hex()
    assert written["device"]["ifa"] == hmac.digest(b"test-key", b"12345", "sha256").hex()
    encoder = RecordEncoder(redactor)
    assert data == encoder.encode(entries[0])
    rest = encoder.encode(queue.ring.pop(Entry))
    assert orjson.loads(rest)["body"]["user"]["id"] == redactor.hash("u\u00e9")


@_COMPILED
def test_a_hash_key_without_the_identifiers_tree_is_refused() -> None:
    queue = _queued([])
    assert queue.ring is not None
    with pytest.raises(ValueError, match="needs the tree"):
        queue.ring.encode(1, 2**40, None, 1, b"e", b"test-key")


@_COMPILED
def test_the_compiled_encoder_lets_other_threads_run_while_it_writes() -> None:
    """The writer's lines are written with the GIL let go: the event loop goes on meanwhile.
    The other thread here lets go of the GIL after each step, and the switch interval is
    made longer than the test, so that it steps during the call only when the call lets go
    (a C call holding the GIL lets no other thread in, however long it takes)."""
    queue = CaptureQueue(2000, _LARGE)
    for capture in captures(2000):
        queue.put(capture)
    assert queue.ring is not None
    tree = Redactor("drop").tree
    steps = 0
    stop = threading.Event()

    def step() -> None:
        nonlocal steps
        while not stop.is_set():
            steps += 1
            time.sleep(0)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(60.0)
    stepper = threading.Thread(target=step)
    try:
        stepper.start()
        while steps == 0:
            time.sleep(0.001)
        before = steps
        _, count = queue.ring.encode(2000, 2**40, tree, 1, b"internal_error")
        during = steps - before
    finally:
        stop.set()
        stepper.join()
        sys.setswitchinterval(interval)
    assert count == 2000
    assert during > 0


def test_a_chunk_ends_with_the_record_that_fills_its_room() -> None:
    make = EntryMaker()
    entries = [make(capture) for capture in captures(30)]
    encoder = RecordEncoder(Redactor("drop"))
    lines = [encoder.encode(entry) for entry in entries]
    room = len(lines[0]) * 3 + 1
    queue = _queued(entries)
    at = 0
    while at < len(entries):
        data, taken, records = encoder.encode_queued(queue, len(entries), room, _no_error)
        reached = at + taken
        assert data == b"".join(lines[at:reached])
        assert records == taken
        assert len(data) >= room or reached == len(entries)
        assert len(data) - len(lines[reached - 1]) < room
        at = reached


def test_without_the_compiled_module_chunks_are_encoded_in_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(writer, "compiled", None)
    make = EntryMaker()
    entries = [make(capture) for capture in captures(5)]
    encoder = RecordEncoder(Redactor("drop"))
    queue = _queued(entries)
    assert queue.ring is None
    data, taken, records = encoder.encode_queued(queue, 5, 2**40, _no_error)
    assert (taken, records) == (5, 5)
    assert data == _reference(encoder, entries)[0]


# The compiled hand-off's records (`enqueue`) against `EntryMaker`'s Python, byte for byte.

_HEADER_LISTS = st.lists(
    st.tuples(
        st.sampled_from(
            [b"content-type", b"x-openrtb-version", b"content-encoding", b"host", b"Content-Type"]
        ),
        st.sampled_from([b"application/json", b"2.6", b"gzip", b"", b'a"b', b"a\\b", b"\xe9"])
        | st.binary(max_size=6),
    ),
    max_size=5,
)
_PRICES = st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e16, 1e-7])
_IMPS = st.builds(Imp, id=st.none() | _STRINGS)
_DECISIONS = st.builds(
    ImpDecision,
    imp=_IMPS,
    score=st.floats(allow_nan=True, allow_infinity=True),
    price=_PRICES,
    reason=st.none() | st.sampled_from(list(NoBidReason)),
)


@_COMPILED
@given(
    headers=_HEADER_LISTS,
    gzipped=st.booleans(),
    request=st.none() | st.builds(BidRequest, imp=st.none() | st.lists(_IMPS, max_size=3)),
    reason=st.none() | _STRINGS | st.sampled_from(list(NoBidReason)),
    decisions=st.none() | st.lists(_DECISIONS, max_size=3),
)
@settings(max_examples=400)
def test_compiled_entries_are_what_the_python_makes(
    headers: Headers,
    gzipped: bool,
    request: BidRequest | None,
    reason: str | None,
    decisions: list[ImpDecision] | None,
) -> None:
    body = (b"\x1f\x8b" if gzipped else b"") + b'{"id":"r"}'
    capture: Capture = (1.0, headers, body, 0.001, "v", (200, request, reason, decisions))
    queue = CaptureQueue(1, _LARGE)
    queue.put(capture)
    try:
        expected = EntryMaker()(capture)
    except UnicodeEncodeError:  # a lone surrogate: the capture is not recorded
        assert (len(queue), queue.dropped) == (0, 1)
        return
    assert queue.pop() == expected


class _OtherImp(msgspec.Struct):
    banner: int | None = None
    id: str | None = None  # at another offset than `Imp`'s


@dataclass
class _PlainImp:
    id: str | None


@_COMPILED
def test_the_compiled_entries_read_any_object_as_the_python_does() -> None:
    """The compiled module reads the structs' fields at their offsets, remembered for the
    last type seen: objects of another type, or of a type without slots, read the same."""
    python = EntryMaker()
    queue = CaptureQueue(1, _LARGE)
    for imp in (Imp(id="1"), _OtherImp(id="2"), _PlainImp("3"), Imp(id="4"), Imp()):
        request = BidRequest(id="r", imp=[imp])  # type: ignore[list-item]
        for verdict in [
            (204, request, "not_ready", None),
            (200, request, None, [ImpDecision(imp, 0.25, 1.5)]),  # type: ignore[arg-type]
        ]:
            capture: Capture = (1.0, HEADERS, b'{"id":"r"}', 0.001, "v", verdict)
            queue.put(capture)
            assert queue.pop() == python(capture)


@_COMPILED
def test_the_bid_paths_captures_never_reach_the_python_entry_encoding() -> None:
    body = orjson.dumps(REQUEST)
    verdicts = [*_bid_path_verdicts(), (400, None, None, None)]
    queue = CaptureQueue(len(verdicts), _LARGE)
    # The Python's encoding raises, and a capture it fails on is dropped: every entry queued
    # here was made by the compiled module.
    with mock.patch.object(record, "_recorded_imps", side_effect=AssertionError("Python path")):
        for verdict in verdicts:
            queue.put((time.time(), [*HEADERS, (b"host", b"bidder")], body, 0.0004, "v", verdict))
    assert queue.dropped == 0
    assert [queue.pop().body for _ in verdicts] == [body] * len(verdicts)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "decimals", "text"),
    [
        (0.0, 3, b"0.0"),
        (0.42, 3, b"0.42"),
        (0.0004, 3, b"0.0"),
        (12.0, 3, b"12.0"),
        (1764547200.5, 6, b"1764547200.5"),
        (1764547200.1234567, 6, b"1764547200.123457"),
        (-1.25, 3, b"-1.25"),
        (float("nan"), 6, b"null"),
        (float("inf"), 3, b"null"),
    ],
)
def test_times_are_written_in_fixed_places(value: float, decimals: int, text: bytes) -> None:
    assert fixed(value, decimals) == text


def _bid_path_verdicts() -> list[Verdict]:
    """The bid path's verdicts on `REQUEST`: impressions bid (with a model's score, in full
    precision) and declined below the floor, the request declined by reason, and failed."""
    request = decode_bid_request(orjson.dumps(REQUEST))
    assert request.imp is not None
    decisions = [
        ImpDecision(request.imp[0], 0.3104512345678901, 2.5),
        ImpDecision(request.imp[1], 0.2, 0.9, reason=NoBidReason.BELOW_FLOOR),
    ]
    return [
        (200, request, None, decisions),
        (204, request, NoBidReason.BELOW_THRESHOLD, None),
        (204, request, ERROR_REASON, None),
    ]


def _no_error() -> None:
    raise AssertionError("no entry should fail")
