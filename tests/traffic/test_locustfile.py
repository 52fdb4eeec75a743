"""The Locust file, run headless for a few seconds against a live bidder."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import orjson

from bidder.settings import Settings
from tests.conftest import PROJECT_ROOT, LiveServer


def test_locust_sends_bid_requests_that_the_bidder_answers(
    live_server: Callable[[Settings], LiveServer],
) -> None:
    bidder = live_server(Settings())
    finished = subprocess.run(
        [
            *(sys.executable, "-m", "locust", "-f", "loadtests/locustfile.py", "--headless"),
            *("--host", bidder.url, "--users", "4", "--spawn-rate", "4", "--run-time", "3s"),
            *("--synthetic-requests", "200", "--user-rate", "50"),
            *("--json", "--skip-log", "--stop-timeout", "2"),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    [stats] = orjson.loads(finished.stdout)
    assert stats["name"] == "bid"
    assert stats["method"] == "POST"
    assert stats["num_requests"] > 0
    assert stats["num_failures"] == 0
