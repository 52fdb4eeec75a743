"""Microbenchmark: CPU time per `InvokeEndpoint` call of each invoker, and of signing.

    python -m loadtests.invoke_bench [--calls 2000] [--repeats 3] [--rows 1,32]

`bidder model-server` runs on a loopback port (pinned to CPU 0 when there are two); this
process (CPU 1, on uvloop as `bidder serve` runs) makes `--calls` sequential calls per
client and batch size, and measures the process time they cost, so the model server's own
work is not counted. The clients alternate within each repeat and the median repeat is
reported, with the ratio aiobotocore / aiohttp. The request body is encoded once
beforehand: both clients send the same bytes, and encoding is the scorer's cost, not the
client's. Dummy credentials only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import uvloop
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bidder.scoring import load_model_artifact
from bidder.scoring.invoke import ClientName, Invoker, SageMakerEndpoint, make_invoker
from bidder.scoring.invoke.sigv4 import SigV4Signer
from bidder.scoring.payloads import CSV, encode_rows
from bidder.settings import DEFAULT_MODEL_PATH
from loadtests.bench import LOCAL_AWS
from loadtests.harness import HOST, MODEL_SERVER, free_port, load_generator_pinned, started

CLIENTS: tuple[ClientName, ...] = ("aiobotocore", "aiohttp")
WARM_UP_CALLS = 200
SIGNING_URL = "https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/bench/invocations"


def _body(rows: int) -> bytes:
    width = load_model_artifact(DEFAULT_MODEL_PATH).num_features
    generator = np.random.default_rng(2026)
    return encode_rows(generator.random((rows, width), dtype=np.float32), CSV)


async def _cpu_per_call(invoker: Invoker, body: bytes, calls: int) -> float:
    """Microseconds of process time per call, over `calls` sequential calls."""
    started_at = time.process_time()
    for _ in range(calls):
        await invoker.invoke(body, None)
    return (time.process_time() - started_at) / calls * 1e6


async def _measure(url: str, rows: list[int], calls: int, repeats: int) -> dict[str, list[float]]:
    # Generous timeouts: CPU is measured, not latency, and a busy machine must not fail it.
    invokers = {
        client: make_invoker(
            SageMakerEndpoint(
                "bench", endpoint_url=url, client=client, connect_timeout=5, read_timeout=5
            ),
            None,
        )
        for client in CLIENTS
    }
    bodies = {count: _body(count) for count in rows}
    figures: dict[str, list[float]] = {}
    for invoker in invokers.values():
        await invoker.start()
    try:
        for invoker in invokers.values():
            await _cpu_per_call(invoker, bodies[rows[0]], WARM_UP_CALLS)
        for _ in range(repeats):
            for count in rows:
                for client, invoker in invokers.items():
                    cost = await _cpu_per_call(invoker, bodies[count], calls)
                    figures.setdefault(f"{client}@{count}", []).append(cost)
    finally:
        for invoker in invokers.values():
            await invoker.close()
    return figures


def _signing_costs(body: bytes, calls: int) -> dict[str, float]:
    """Microseconds per signature: botocore's `SigV4Auth` and the cached-key signer."""
    credentials = Credentials("AKIDBENCH", "bench-secret", "bench-token")
    headers = {"Content-Type": CSV, "Accept": CSV}
    reference = SigV4Auth(credentials, "sagemaker", "us-east-1")
    signer = SigV4Signer(method="POST", url=SIGNING_URL, region="us-east-1", service="sagemaker")
    frozen = credentials.get_frozen_credentials()

    def botocore_sign() -> None:
        request = AWSRequest(method="POST", url=SIGNING_URL, data=body, headers=headers)
        reference.add_auth(request)

    def lean_sign() -> None:
        signer.sign(headers, body, frozen)

    return {
        "SigV4Auth.add_auth": _per_call(botocore_sign, calls),
        "SigV4Signer.sign": _per_call(lean_sign, calls),
    }


def _per_call(function: Callable[[], None], calls: int) -> float:
    started_at = time.process_time()
    for _ in range(calls):
        function()
    return (time.process_time() - started_at) / calls * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000, help="calls per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", default="1,32", help="rows per call, comma-separated")
    args = parser.parse_args(argv)
    rows = [int(count) for count in args.rows.split(",")]
    # Dummy credentials: the local model server ignores SigV4, and no real key is needed.
    os.environ.update(LOCAL_AWS)
    port = free_port()
    with load_generator_pinned() as pinned, started("model server", MODEL_SERVER, port, pin=pinned):
        figures = uvloop.run(_measure(f"http://{HOST}:{port}", rows, args.calls, args.repeats))
    print(f"CPU per call, median of {args.repeats} x {args.calls} calls (pinned: {pinned})")
    print(f"{'rows':>5}  {'aiobotocore':>12}  {'aiohttp':>12}  ratio")
    for count in rows:
        botocore_us = statistics.median(figures[f"aiobotocore@{count}"])
        lean_us = statistics.median(figures[f"aiohttp@{count}"])
        print(
            f"{count:>5}  {botocore_us:>9.0f} us  {lean_us:>9.0f} us  {botocore_us / lean_us:.2f}x"
        )
    print("signing, per signature:")
    for name, cost in _signing_costs(_body(rows[-1]), args.calls * 5).items():
        print(f"  {name:<20} {cost:6.1f} us")


if __name__ == "__main__":
    main()
