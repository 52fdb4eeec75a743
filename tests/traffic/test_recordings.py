"""Reading recordings: gzip members, truncated files, bad records named by file and line."""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

import orjson
import pytest

from bidder.traffic.recordings import RecordingError, read_recordings
from tests.traffic.recording_files import decision, gzip_members, record, write_recording


def bid_request(number: int) -> dict[str, object]:
    return {"id": f"r{number}", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}]}


def records(count: int, start: float = 1_000.0) -> list[dict[str, object]]:
    return [
        record(
            bid_request(n),
            ts=start + n * 0.01,
            status=204,
            decision=decision("no_bid", [("1", None)]),
        )
        for n in range(count)
    ]


def test_every_member_of_every_file_is_read_in_arrival_order(tmp_path: Path) -> None:
    # Two workers' files whose records interleave in time.
    write_recording(tmp_path / "a.jsonl.gz", records(50)[::2], per_member=7)
    write_recording(tmp_path / "b.jsonl.gz", records(50)[1::2], per_member=3)
    recordings = read_recordings([tmp_path], max_records=1000)
    assert [r.id for r in recordings.requests] == [f"r{n}" for n in range(50)]
    assert len(recordings.files) == 2
    assert recordings.truncated == []
    first = recordings.requests[0]
    assert orjson.loads(first.body) == bid_request(0)
    assert first.status == 204
    assert first.decision is not None
    assert first.decision.outcome == "no_bid"
    assert first.decision.imps[0].bid is False


def test_the_body_is_sent_as_the_recorder_stored_it(tmp_path: Path) -> None:
    # Spacing and key order survive: the body is taken as raw JSON, not re-encoded.
    body = b'{ "imp" : [ {"id":"1","banner":{"w":300,"h":250}} ], "id":"spaced" }'
    line = b'{"v":1,"id":"spaced","ts":1.0,"headers":{},"body":' + body + b',"status":204}\n'
    path = tmp_path / "raw.jsonl.gz"
    path.write_bytes(gzip.compress(line))
    [request] = read_recordings([path], max_records=10).requests
    assert request.body == body


def test_a_body_that_was_not_json_is_sent_from_base64(tmp_path: Path) -> None:
    raw = b"\x00not json{"
    path = write_recording(
        tmp_path / "bad.jsonl.gz",
        [record(raw, ts=1.0, status=400, decision=decision("invalid", []))],
    )
    [request] = read_recordings([path], max_records=10).requests
    assert request.body == raw
    assert request.id is None


def test_connection_headers_are_dropped_and_a_json_body_is_not_encoded(tmp_path: Path) -> None:
    headers = {
        "Content-Type": "application/json",
        "content-length": "999",
        "host": "exchange.example",
        "connection": "keep-alive",
        "content-encoding": "gzip",
        "x-openrtb-version": "2.5",
    }
    path = write_recording(
        tmp_path / "h.jsonl.gz",
        [
            record(bid_request(1), ts=1.0, status=204, decision=None, headers=headers),
            record(b"\x1f\x8b raw gzip", ts=2.0, status=400, decision=None, headers=headers),
        ],
    )
    json_body, raw_body = read_recordings([path], max_records=10).requests
    assert json_body.headers == {"content-type": "application/json", "x-openrtb-version": "2.5"}
    # Raw bytes are sent as received, so their content-encoding still applies.
    assert raw_body.headers["content-encoding"] == "gzip"


@pytest.mark.parametrize("kept", [0.0, 0.02, 0.3, 0.6, 0.97, 0.99])
def test_a_file_cut_in_its_last_member_keeps_the_complete_records(
    tmp_path: Path, kept: float
) -> None:
    whole = gzip_members(records(40), per_member=10)
    last_member = len(gzip_members(records(40)[30:], per_member=10))
    # Somewhere from the last member's first byte to inside its 8-byte trailer.
    cut = len(whole) - last_member + max(1, int(kept * last_member))
    path = tmp_path / "crashed.jsonl.gz.partial"
    path.write_bytes(whole[:cut])
    recordings = read_recordings([path], max_records=1000)
    assert recordings.truncated == [path]
    ids = [r.id for r in recordings.requests]
    # The first three members are whole; of the cut one, the lines that were complete.
    assert ids == [f"r{n}" for n in range(len(ids))]
    assert 30 <= len(ids) <= 40
    if kept < 0.1:
        assert len(ids) == 30
    if kept > 0.98:
        # Only the trailer was lost: every record is there.
        assert len(ids) == 40


def test_a_cut_exactly_after_a_member_is_a_whole_file(tmp_path: Path) -> None:
    path = write_recording(tmp_path / "whole.jsonl.gz", records(20), per_member=10)
    recordings = read_recordings([path], max_records=1000)
    assert recordings.truncated == []
    assert len(recordings.requests) == 20


def test_a_file_that_is_not_gzip_is_named(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl.gz"
    path.write_bytes(b'{"v": 1}\n')
    with pytest.raises(RecordingError, match=r"plain\.jsonl\.gz: not a readable gzip file"):
        read_recordings([path], max_records=10)


def test_damage_inside_a_member_is_an_error(tmp_path: Path) -> None:
    data = bytearray(gzip_members(records(20), per_member=10))
    data[40] ^= 0xFF
    path = tmp_path / "damaged.jsonl.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingError, match=r"damaged\.jsonl\.gz"):
        read_recordings([path], max_records=100)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json", r"bad\.jsonl\.gz:2: JSON is malformed"),
        (
            b'{"v": 1, "id": "x", "body": {}}',
            r"bad\.jsonl\.gz:2: Object missing required field `ts`",
        ),
        (b'{"v": 2, "ts": 1.0, "body": {}}', r"bad\.jsonl\.gz:2: record version 2"),
        (b'{"v": 1, "ts": 1.0}', r"bad\.jsonl\.gz:2: the record has neither `body` nor"),
        (b'{"v": 1, "ts": 1.0, "body_b64": "@@"}', r"bad\.jsonl\.gz:2: body_b64 is not base64"),
        (
            b'{"v": 1, "ts": 1.0, "body": {}, "decision": {"outcome": "maybe"}}',
            r"bad\.jsonl\.gz:2: .*`\$\.decision\.outcome`",
        ),
    ],
)
def test_a_bad_record_is_named_by_file_and_line(tmp_path: Path, line: bytes, message: str) -> None:
    good = orjson.dumps(records(1)[0])
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(gzip.compress(good + b"\n" + line + b"\n"))
    with pytest.raises(RecordingError, match=message):
        read_recordings([path], max_records=10)


def test_more_records_than_allowed_are_refused(tmp_path: Path) -> None:
    path = write_recording(tmp_path / "big.jsonl.gz", records(11))
    with pytest.raises(RecordingError, match="more than 10 records"):
        read_recordings([path], max_records=10)


def test_missing_paths_and_empty_recordings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no such file"):
        read_recordings([tmp_path / "nowhere.jsonl.gz"], max_records=10)
    with pytest.raises(RecordingError, match=r"no \*\.jsonl\.gz recording"):
        read_recordings([tmp_path], max_records=10)
    (tmp_path / "empty.jsonl.gz").write_bytes(b"")
    with pytest.raises(RecordingError, match="no record"):
        read_recordings([tmp_path], max_records=10)


def test_base64_of_the_helper_round_trips() -> None:
    assert base64.b64decode(record(b"\x01\x02", ts=0, status=400, decision=None)["body_b64"]) == (
        b"\x01\x02"
    )
