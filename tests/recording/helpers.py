"""Reading what the recorder wrote, and making captures as the bid path makes them."""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bidder.openrtb import decode_bid_request
from bidder.recording import Capture
from bidder.traffic.synthetic import generate_bid_requests

HEADERS = [(b"content-type", b"application/json"), (b"x-openrtb-version", b"2.6")]


def closed_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl.gz"))


def partial_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl.gz.partial"))


def read_file(path: Path) -> list[dict[str, Any]]:
    """Every record of a closed file (`gzip` reads its members as one stream)."""
    return [orjson.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]


def read_directory(directory: Path) -> list[dict[str, Any]]:
    return [record for path in closed_files(directory) for record in read_file(path)]


def captures(count: int, seed: int = 1) -> list[Capture]:
    """Captures of synthetic requests answered "not ready", as the bid path hands them over."""
    made: list[Capture] = []
    for request in generate_bid_requests(count, seed=seed):
        body = orjson.dumps(request)
        decoded = decode_bid_request(body)
        made.append(
            (time.time(), HEADERS, body, 0.0004, "test@1", (204, decoded, "not_ready", None))
        )
    return made


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Polls `condition` until it holds; fails the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.02)
