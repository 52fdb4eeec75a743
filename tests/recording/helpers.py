"""Reading what the recorder wrote, and making captures as the bid path makes them."""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from hypothesis import strategies as st

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


# JSON values as a request's members could hold them, identifiers' places included.
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["id", "ip", "uids", "eids", "x", "é"]), inner, max_size=3
        )
    ),
    max_leaves=12,
)
_UIDS = st.lists(st.dictionaries(st.sampled_from(["id", "atype"]), _VALUES, max_size=2), max_size=3)
_EIDS = st.lists(
    st.fixed_dictionaries({}, optional={"source": st.text(max_size=5), "uids": _UIDS | _VALUES}),
    max_size=3,
)
_USER = st.fixed_dictionaries(
    {},
    optional={
        "id": _VALUES,
        "buyeruid": _VALUES,
        "eids": _EIDS | _VALUES,
        "keywords": _VALUES,
        "ext": st.fixed_dictionaries(
            {},
            optional={
                "eids": _EIDS,
                "prebid": st.fixed_dictionaries(
                    {}, optional={"buyeruids": st.dictionaries(st.text(max_size=5), _VALUES)}
                ),
            },
        )
        | _VALUES,
    },
)
_DEVICE_MEMBERS = ("ip", "ipv6", "ifa", "didmd5", "macsha1", "ua", "os", "geo", "ext")
_DEVICE = st.fixed_dictionaries({}, optional=dict.fromkeys(_DEVICE_MEMBERS, _VALUES))
REQUESTS = st.fixed_dictionaries(
    {"id": st.text(max_size=8)},
    optional={"device": _DEVICE | _VALUES, "user": _USER | _VALUES, "imp": _VALUES, "ext": _VALUES},
)


def formatted(document: Any, indent: bool) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 if indent else 0)
