"""SIGTERM under load: readiness turns false, in-flight requests finish, the process exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx

from tests.conftest import SEED_FEATURE_SPEC, SEED_MODEL, free_port
from tests.server.test_bid_endpoint import banner_request


def test_sigterm_under_load_drops_nothing_in_flight() -> None:
    port = free_port()
    env = {
        **os.environ,
        "BIDDER_MODEL_PATH": str(SEED_MODEL),
        "BIDDER_FEATURE_SPEC_PATH": str(SEED_FEATURE_SPEC),
        "BIDDER_BID_THRESHOLD": "0.0001",
        "BIDDER_PRICE_SLOPE": "1000",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bidder", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    results = asyncio.run(_load_then_terminate(url, process))
    output = process.communicate(timeout=40)[0]
    assert process.returncode == 0, output
    answered, failed_in_flight, readiness_after_signal = results
    assert answered > 50
    assert failed_in_flight == 0, "a request that was sent before SIGTERM got no answer"
    assert readiness_after_signal in (503, None), "readiness turned false at once"
    assert '"message":"draining"' in output


async def _load_then_terminate(
    url: str, process: subprocess.Popen[str]
) -> tuple[int, int, int | None]:
    body = banner_request()
    answered = 0
    failed_in_flight = 0
    stop = asyncio.Event()

    async def worker() -> None:
        nonlocal answered, failed_in_flight
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            while not stop.is_set():
                try:
                    response = await client.post("/openrtb2/bid", json=body)
                except httpx.TransportError:
                    # A request on a connection the server closed while draining never
                    # reached the bidder; one that reached it must be answered.
                    if not stop.is_set():
                        failed_in_flight += 1
                    return
                # A bid or a no-bid (a deadline under this load) are both answers.
                assert response.status_code in (200, 204)
                answered += 1

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    await asyncio.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    readiness: int | None = None
    try:
        async with httpx.AsyncClient(base_url=url, timeout=2) as probe:
            readiness = (await probe.get("/readyz")).status_code
    except httpx.TransportError:
        readiness = None  # the listener already closed: no new connections either
    stop.set()
    await asyncio.gather(*workers)
    return answered, failed_in_flight, readiness
