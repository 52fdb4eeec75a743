"""Locust load test of the bid endpoint with realistic OpenRTB traffic.

Every user posts bid requests from `bidder.traffic.synthetic` (1-4 impressions, banner,
video and native, site and app, geo, devices, floors), the same ones for the same seed,
encoded once per process. A 200 must be a bid response with bids and a 204 is a no-bid;
anything else is a failure. Run it headless against a bidder on this machine:

    .venv/bin/locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:8000 \\
        --users 50 --spawn-rate 50 --run-time 30s

`--user-rate N` paces each user at N requests/s (0, the default, sends back to back);
`--synthetic-requests` and `--synthetic-seed` choose the traffic. One Locust process
tops out at a few thousand requests/s on one core: for more, `bidder loadgen`.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import orjson
from locust import FastHttpUser, constant_throughput, events, task

from bidder.traffic.synthetic import generate_bid_requests

BID_PATH = "/openrtb2/bid"
HEADERS = {"content-type": "application/json", "x-openrtb-version": "2.6"}
_bodies: list[bytes] = []


def _add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--synthetic-requests", type=int, default=2000, help="distinct bid requests (cycled)"
    )
    parser.add_argument("--synthetic-seed", type=int, default=2026, help="traffic seed")
    parser.add_argument(
        "--user-rate", type=float, default=0.0, help="requests/s per user (0: back to back)"
    )


def _encode_requests(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    _bodies[:] = [
        orjson.dumps(request)
        for request in generate_bid_requests(options.synthetic_requests, options.synthetic_seed)
    ]


# Registered by call, not as decorators: locust's `add_listener` is untyped, and as a
# decorator it would leave the functions untyped to the type checker.
events.init_command_line_parser.add_listener(_add_arguments)
events.test_start.add_listener(_encode_requests)


class Exchange(FastHttpUser):
    """An exchange sending bid requests over a keep-alive connection."""

    def on_start(self) -> None:
        # Each user starts at its own place in the traffic, so users do not move in step.
        start = random.randrange(len(_bodies))
        self.bodies: Iterator[bytes] = itertools.islice(itertools.cycle(_bodies), start, None)

    def wait_time(self) -> float:
        rate: float = self.environment.parsed_options.user_rate
        return constant_throughput(rate)(self) if rate > 0 else 0.0

    @task
    def bid(self) -> None:
        # locust annotates `data` as str or dict, but sends bytes as they are (its docstring
        # says as much): the bodies stay encoded once, not decoded to be encoded again.
        with self.client.post(
            BID_PATH,
            data=next(self.bodies),  # type: ignore[arg-type]
            headers=HEADERS,
            name="bid",
            catch_response=True,
        ) as response:
            if response.status_code == 200:
                answer = orjson.loads(response.content or b"{}")
                if not any(seat.get("bid") for seat in answer.get("seatbid", ())):
                    response.failure("a 200 without any bid")
            elif response.status_code != 204:
                response.failure(f"status {response.status_code}: {response.text[:200]}")
