"""`bidder serve --workers 2`: both workers serve, and `/metrics` sums over them, on the bid
port or, with `BIDDER_METRICS_PORT`, on the supervisor's own port."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.conftest import SEED_FEATURE_SPEC, SEED_MODEL, free_port
from tests.server.test_bid_endpoint import banner_request

REQUESTS = 40


def sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


@contextlib.contextmanager
def two_workers(metrics_dir: Path, **env: str) -> Iterator[str]:
    """`bidder serve --workers 2` on a free port, stopped with SIGTERM; yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bidder", "serve", "--port", str(port), "--workers", "2"],
        env={
            **os.environ,
            "BIDDER_MODEL_PATH": str(SEED_MODEL),
            "BIDDER_FEATURE_SPEC_PATH": str(SEED_FEATURE_SPEC),
            "BIDDER_BID_THRESHOLD": "0.0001",
            "BIDDER_PRICE_SLOPE": "1000",
            "BIDDER_METRICS_DIR": str(metrics_dir),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output


def scrape_until(url: str, expected: dict[str, float], seconds: float = 60) -> str:
    """/metrics once every series in `expected` reads its value.

    Each worker folds its counts in every second, one metric per turn of its event loop,
    so a scrape between two folds can see a request in one series and not yet in the
    next: the series are waited for together, not read one after the other."""
    deadline = time.monotonic() + seconds
    text = ""
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError, AssertionError):
            text = httpx.get(url, timeout=5).text
            if all(sample(text, name) == value for name, value in expected.items()):
                return text
        time.sleep(0.1)
    raise AssertionError(f"{expected} not all reached at {url}:\n{text}")


def bid_from_both_workers(url: str) -> None:
    pids = set()
    for _ in range(REQUESTS):
        # A new connection each time, so that the kernel spreads them over the workers.
        with httpx.Client(base_url=url, timeout=5) as client:
            assert client.post("/openrtb2/bid", json=banner_request()).status_code == 200
            pids.add(client.get("/readyz").json().get("pid"))
    assert len(pids) == 2, "both workers answered"


def test_two_workers_share_their_metrics(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_stale.db").write_bytes(b"left by an earlier run")
    with two_workers(metrics_dir) as url:
        scrape_until(f"{url}/metrics", {"bidder_ready": 2})
        bid_from_both_workers(url)
        scrape_until(
            f"{url}/metrics",
            {
                "bidder_request_duration_seconds_count": REQUESTS,
                'bidder_requests_total{outcome="bid"}': REQUESTS,
            },
        )
    assert not (metrics_dir / "counter_stale.db").exists()


def test_the_supervisor_serves_the_sum_on_the_metrics_port(tmp_path: Path) -> None:
    metrics_port = free_port()
    scrape = f"http://127.0.0.1:{metrics_port}/metrics"
    with two_workers(tmp_path, BIDDER_METRICS_PORT=str(metrics_port)) as url:
        scrape_until(scrape, {"bidder_ready": 2})
        bid_from_both_workers(url)
        assert httpx.get(f"{url}/metrics", timeout=5).status_code == 404
        text = scrape_until(
            scrape,
            {
                "bidder_request_duration_seconds_count": REQUESTS,
                "bidder_bid_price_count": REQUESTS,
                'bidder_impressions_total{decision="bid"}': REQUESTS,
            },
        )
        assert sample(text, "bidder_shed_requests_total") == 0
        assert sample(text, "bidder_in_flight_requests") == 0
        # CPU and memory of both workers, summed; the build and model once, not per worker.
        assert sample(text, "process_cpu_seconds_total") > 0
        assert sample(text, "process_resident_memory_bytes") > 0
        assert text.count("bidder_build_info{") == 1
        assert text.count("bidder_model_info{") == 1
