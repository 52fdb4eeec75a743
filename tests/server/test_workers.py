"""`bidder serve --workers 2`: both workers serve, and `/metrics` sums over them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import SEED_FEATURE_SPEC, SEED_MODEL, free_port
from tests.server.test_bid_endpoint import banner_request


def sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_two_workers_share_their_metrics(tmp_path: Path) -> None:
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_stale.db").write_bytes(b"left by an earlier run")
    env = {
        **os.environ,
        "BIDDER_MODEL_PATH": str(SEED_MODEL),
        "BIDDER_FEATURE_SPEC_PATH": str(SEED_FEATURE_SPEC),
        "BIDDER_BID_THRESHOLD": "0.0001",
        "BIDDER_PRICE_SLOPE": "1000",
        "BIDDER_METRICS_DIR": str(metrics_dir),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bidder", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        ready = 0.0
        while ready < 2 and time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError, AssertionError):
                ready = sample(httpx.get(f"{url}/metrics", timeout=2).text, "bidder_ready")
            time.sleep(0.1)
        assert ready == 2, "both workers report ready"
        pids = set()
        for _ in range(40):
            # A new connection each time, so that the kernel spreads them over the workers.
            with httpx.Client(base_url=url, timeout=5) as client:
                assert client.post("/openrtb2/bid", json=banner_request()).status_code == 200
                pids.add(client.get("/readyz").json().get("pid"))
        # Each worker folds its counts into the shared files at least once a second.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            text = httpx.get(f"{url}/metrics", timeout=5).text
            if sample(text, "bidder_request_duration_seconds_count") == 40:
                break
            time.sleep(0.2)
        assert sample(text, 'bidder_requests_total{outcome="bid"}') == 40
        assert sample(text, "bidder_request_duration_seconds_count") == 40
        assert len(pids) == 2, "both workers answered"
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert not (metrics_dir / "counter_stale.db").exists()
