"""The decision diff on real bidders: traffic recorded from one bidder's answers, replayed
against a bidder with another bid threshold and price slope, checked against the diff
computed directly from the second bidder's answers to the same requests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from bidder.cli import main
from bidder.settings import Settings
from bidder.traffic.synthetic import generate_bid_requests
from tests.conftest import LiveServer
from tests.traffic.recording_files import HEADERS, decision_from_answer, record, write_recording

REQUESTS = 300


def answers(url: str, requests: list[dict[str, Any]]) -> list[tuple[int, bytes]]:
    with httpx.Client(base_url=url, headers=HEADERS, timeout=10) as client:
        return [
            (answer.status_code, answer.content)
            for answer in (client.post("/openrtb2/bid", content=orjson.dumps(r)) for r in requests)
        ]


def imp_prices(request: dict[str, Any], status: int, body: bytes) -> dict[str, float | None]:
    imps = decision_from_answer(request, status, body)["imps"]
    return {imp["id"]: imp["price"] for imp in imps}


def expected_diff(
    requests: list[dict[str, Any]],
    before: list[tuple[int, bytes]],
    after: list[tuple[int, bytes]],
) -> dict[str, Any]:
    """The diff computed straight from both bidders' answers."""
    changes: Counter[str] = Counter()
    same_requests = 0
    for request, (old_status, old_body), (new_status, new_body) in zip(
        requests, before, after, strict=True
    ):
        same = old_status == new_status
        old, new = (
            imp_prices(request, old_status, old_body),
            imp_prices(request, new_status, new_body),
        )
        for imp_id, price in old.items():
            change = "imps_same"
            if price is not None and new[imp_id] is None:
                change = "bid_to_no_bid"
            elif price is None and new[imp_id] is not None:
                change = "no_bid_to_bid"
            elif price is not None and abs(price - new[imp_id]) > 1e-6:  # type: ignore[operator]
                change = "price_changed"
            changes[change] += 1
            same = same and change == "imps_same"
        same_requests += same
    return {"same": same_requests, **changes}  # imps_same, bid_to_no_bid, ...


def test_a_replay_against_a_changed_bidder_reports_what_changed(
    live_server: Callable[[Settings], LiveServer], tmp_path: Path
) -> None:
    requests = generate_bid_requests(REQUESTS, seed=11)
    recorded_bidder = live_server(Settings(bid_threshold=0.05, price_slope=40.0))
    changed_bidder = live_server(Settings(bid_threshold=0.12, price_slope=50.0))

    before = answers(recorded_bidder.url, requests)
    records = [
        record(
            request,
            ts=1_700_000_000 + 0.002 * n,
            status=status,
            decision=decision_from_answer(request, status, body),
        )
        for n, (request, (status, body)) in enumerate(zip(requests, before, strict=True))
    ]
    path = write_recording(tmp_path / "recorded.jsonl.gz", records)
    out = tmp_path / "report.json"
    code = main(
        [
            *("replay", str(path), "--target", changed_bidder.url),
            *("--rate", "300", "--report", str(out), "--no-progress"),
        ]
    )
    assert code == 0
    after = answers(changed_bidder.url, requests)
    expected = expected_diff(requests, before, after)

    diff = orjson.loads(out.read_bytes())["decisions"]
    assert diff["compared"] == REQUESTS
    assert diff["same"] == expected["same"]
    assert diff["changed"] == REQUESTS - expected["same"]
    imps = diff["imps"]
    assert imps["same"] == expected["imps_same"]
    for change in ("bid_to_no_bid", "no_bid_to_bid", "price_changed"):
        assert imps[change] == expected.get(change, 0), change
    # A higher threshold takes bids away and a steeper slope raises every price left. (It may
    # also lift an impression over its floor: scores depend on the hour, so some hours of
    # the day have one, others none.)
    assert expected.get("bid_to_no_bid", 0) > 0
    assert expected.get("price_changed", 0) > 0
    assert diff["price_delta"]["decreased"] == 0
    assert diff["price_delta"]["increased"] == expected["price_changed"]
    outcomes = Counter(
        f"{'bid' if old == 200 else 'no_bid'}->{'bid' if new == 200 else 'no_bid'}"
        for (old, _), (new, _) in zip(before, after, strict=True)
    )
    assert diff["outcomes"] == dict(sorted(outcomes.items()))
