"""The recorder in a real bidder: every sampled request recorded once, as it was answered."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson

from bidder.openrtb import decode_bid_request
from bidder.recording import Sampler
from bidder.server import BidderApp
from bidder.settings import Settings
from bidder.traffic.synthetic import generate_bid_requests
from tests.conftest import LiveServer, free_port
from tests.recording.helpers import closed_files, partial_files, read_directory, wait_until

BID = "/openrtb2/bid"
HEADERS = {"content-type": "application/json", "x-openrtb-version": "2.6"}
HASH_KEY = "recording-test-key-0123"


def recording_settings(directory: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "record_dir": directory,
        "record_sample_rate": 1.0,
        "record_flush_seconds": 0.05,
        # Low enough that the packaged model bids on part of the synthetic traffic.
        "bid_threshold": 0.02,
    }
    return Settings(**(values | overrides))


async def post_all(url: str, bodies: list[bytes], **headers: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:
        return await asyncio.gather(
            *(client.post(BID, content=body, headers=HEADERS | headers) for body in bodies)
        )


def serve_and_send(settings: Settings, bodies: list[bytes]) -> tuple[list[httpx.Response], str]:
    """Sends `bodies` concurrently to a bidder, stops it (which closes the recording), and
    returns the answers and the model version it served."""
    with LiveServer(BidderApp(settings), free_port()) as server:
        responses = asyncio.run(post_all(server.url, bodies))
        version = httpx.get(f"{server.url}/readyz").json()["model_version"]
    return responses, version


def test_every_request_is_recorded_once_and_matches_its_answer(tmp_path: Path) -> None:
    requests = generate_bid_requests(300, seed=11)
    bodies = [orjson.dumps(request) for request in requests]
    invalid = [b'{"id": "bad-1", "imp": []}', b"{not json"]
    responses, version = serve_and_send(
        recording_settings(tmp_path, record_user_ids="keep"), bodies + invalid
    )
    # Shutdown wrote the queue out and closed the file.
    assert not partial_files(tmp_path)
    records = read_directory(tmp_path)
    assert len(records) == len(bodies) + len(invalid)
    by_id = {record["id"]: record for record in records}
    assert Counter(record["id"] for record in records).most_common(1)[0][1] == 1

    statuses = Counter(response.status_code for response in responses)
    assert statuses[200] > 0
    assert statuses[204] > 0
    for request, body, response in zip(requests, bodies, responses, strict=False):
        record = by_id[request["id"]]
        assert record["status"] == response.status_code
        assert record["body"] == request
        assert record["model_version"] == version
        assert record["headers"] == HEADERS
        assert record["latency_ms"] > 0
        decision = record["decision"]
        prices = {}
        if response.status_code == 200:
            prices = {
                bid["impid"]: bid["price"]
                for seat in response.json()["seatbid"]
                for bid in seat["bid"]
            }
        assert decision["outcome"] == ("bid" if prices else "no_bid")
        assert [imp["id"] for imp in decision["imps"]] == [imp["id"] for imp in request["imp"]]
        for imp in decision["imps"]:
            assert imp["bid"] == (imp["id"] in prices)
            assert imp["price"] == prices.get(imp["id"])
            if imp["bid"]:
                assert imp["reason"] is None
                assert imp["score"] is not None
            else:
                # Its own reason, or the request's when it was declined before scoring (a
                # deadline on a loaded machine).
                assert imp["reason"] is not None
        assert len(body) > 0

    assert by_id["bad-1"]["status"] == 400
    assert by_id["bad-1"]["body"] == {"id": "bad-1", "imp": []}
    assert by_id[""]["status"] == 400
    assert base64.b64decode(by_id[""]["body_b64"]) == b"{not json"
    for record in (by_id["bad-1"], by_id[""]):
        assert record["decision"] == {"outcome": "invalid", "reason": None, "imps": []}


def test_identifiers_are_hashed_before_anything_is_written(tmp_path: Path) -> None:
    requests = generate_bid_requests(20, seed=3)
    settings = recording_settings(tmp_path, record_user_ids="hash", record_hash_key=HASH_KEY)
    serve_and_send(settings, [orjson.dumps(request) for request in requests])
    by_id = {record["id"]: record for record in read_directory(tmp_path)}
    for request in requests:
        device = by_id[request["id"]]["body"]["device"]
        for field in ("ip", "ifa"):
            if field in request["device"]:
                expected = hmac.new(
                    HASH_KEY.encode(), request["device"][field].encode(), hashlib.sha256
                )
                assert device[field] == expected.hexdigest()
    written = b"".join(gzip.decompress(path.read_bytes()) for path in closed_files(tmp_path))
    for request in requests:
        for field in ("ip", "ifa"):
            if field in request["device"]:
                assert request["device"][field].encode() not in written


def test_sampling_by_id_takes_the_same_requests_every_time(tmp_path: Path) -> None:
    requests = generate_bid_requests(200, seed=5)
    bodies = [orjson.dumps(request) for request in requests]
    sampler = Sampler(0.3, by_id=True)
    expected = {
        request["id"]
        for request, body in zip(requests, bodies, strict=True)
        if sampler(decode_bid_request(body), body)
    }
    assert 20 < len(expected) < 100
    for run in ("first", "second"):
        directory = tmp_path / run
        settings = recording_settings(directory, record_sample_rate=0.3, record_sample_by_id=True)
        serve_and_send(settings, bodies)
        assert {record["id"] for record in read_directory(directory)} == expected


def test_a_full_queue_drops_and_counts_while_every_request_is_answered(tmp_path: Path) -> None:
    bodies = [orjson.dumps(request) for request in generate_bid_requests(300, seed=9)]
    settings = recording_settings(tmp_path, record_queue_size=1)
    with LiveServer(BidderApp(settings), free_port()) as server:
        responses = asyncio.run(post_all(server.url, bodies))

        def counts() -> tuple[float, float]:
            metrics = httpx.get(f"{server.url}/metrics").text
            return (
                _sample(metrics, 'bidder_recorder_records_total{outcome="written"}'),
                _sample(metrics, 'bidder_recorder_records_total{outcome="dropped"}'),
            )

        # The writer reports what it wrote and what was dropped at its next drain.
        wait_until(lambda: sum(counts()) == len(bodies))
        written, dropped = counts()
    assert {response.status_code for response in responses} <= {200, 204}
    assert dropped > 0
    assert len(read_directory(tmp_path)) == written


def _sample(exposition: str, name: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} is not in /metrics")
