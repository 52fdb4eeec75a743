"""The record a capture becomes: the shared recording format, line for line."""

from __future__ import annotations

import base64
import gzip
from pathlib import Path
from typing import Any

import orjson

from bidder.asgi import Headers
from bidder.decision.policy import ImpDecision, NoBidReason
from bidder.openrtb import decode_bid_request
from bidder.recording.record import EntryMaker, RecordEncoder, Verdict
from bidder.recording.redaction import Redactor
from bidder.traffic.recordings import read_recordings
from tests.recording.helpers import HEADERS

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
