"""Writing recordings in the recorder's format, for replay tests: gzip-compressed JSON Lines,
one gzip member per flush, records made from requests and the answers they got."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

HEADERS = {"content-type": "application/json", "x-openrtb-version": "2.6"}


def record(
    body: dict[str, Any] | bytes,
    *,
    ts: float,
    status: int,
    decision: dict[str, Any] | None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One record; a `bytes` body is stored as `body_b64`, as the recorder stores bodies
    that are not JSON."""
    entry: dict[str, Any] = {
        "v": 1,
        "id": body.get("id") if isinstance(body, dict) else None,
        "ts": ts,
        "headers": HEADERS if headers is None else headers,
        "status": status,
        "latency_ms": 0.5,
        "model_version": "test",
        "decision": decision,
    }
    if isinstance(body, dict):
        entry["body"] = body
    else:
        entry["body_b64"] = base64.b64encode(body).decode()
    return entry


def decision(outcome: str, imps: Iterable[tuple[str, float | None]]) -> dict[str, Any]:
    """A recorded decision from `(imp id, price or None for a no-bid)` pairs."""
    return {
        "outcome": outcome,
        "reason": None,
        "imps": [
            {"id": imp, "bid": price is not None, "price": price, "score": None, "reason": None}
            for imp, price in imps
        ],
    }


def decision_from_answer(request: dict[str, Any], status: int, answer: bytes) -> dict[str, Any]:
    """What the recorder stores about an answer, derived from the answer on the wire."""
    if status >= 400:
        return decision("invalid", [])
    prices: dict[str, float] = {}
    if status == 200:
        for seatbid in orjson.loads(answer)["seatbid"]:
            prices.update({bid["impid"]: bid["price"] for bid in seatbid["bid"]})
    imps = [(imp["id"], prices.get(imp["id"])) for imp in request["imp"]]
    return decision("bid" if prices else "no_bid", imps)


def gzip_members(records: Sequence[dict[str, Any]], per_member: int) -> bytes:
    """The records as JSON Lines, `per_member` lines per gzip member."""
    data = b""
    for start in range(0, len(records), per_member):
        lines = b"".join(orjson.dumps(r) + b"\n" for r in records[start : start + per_member])
        data += gzip.compress(lines)
    return data


def write_recording(path: Path, records: Sequence[dict[str, Any]], per_member: int = 100) -> Path:
    path.write_bytes(gzip_members(records, per_member))
    return path
