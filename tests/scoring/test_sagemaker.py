"""The SageMaker scorer with each of its clients, aiobotocore and the lean aiohttp invoker:
real calls against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from prometheus_client import CollectorRegistry

from bidder.errors import ConfigurationError, ScoringError
from bidder.scoring import EmbeddedScorer
from bidder.scoring.breaker import BreakerState, CircuitBreaker
from bidder.scoring.invoke import ClientName
from bidder.scoring.sagemaker import SageMakerEndpoint, SageMakerScorer
from bidder.telemetry import Metrics
from tests.conftest import free_port
from tests.faults import FaultServer, fault_server

ROWS = np.array(
    [[2, 0, 0.0, 7.0, 3.0, 20.0, 2], [1, 13, 0, np.nan, 5, 9, 1], [6, 23, 1, 2, np.nan, np.nan, 4]],
    dtype=np.float32,
)


pytestmark = pytest.mark.usefixtures("aws_credentials")


@pytest.fixture
def server(seed_model: Path) -> Iterator[FaultServer]:
    with fault_server(seed_model, free_port()) as running:
        yield running


@pytest.fixture(params=["aiobotocore", "aiohttp"])
def client(request: pytest.FixtureRequest) -> ClientName:
    name: ClientName = request.param
    return name


def make_scorer(url: str, client: ClientName, **options: Any) -> SageMakerScorer:
    threshold = options.pop("failure_threshold", 3)
    connector_args = options.pop("connector_args", None)
    endpoint = SageMakerEndpoint(
        endpoint_name="seed",
        endpoint_url=url,
        client=client,
        **{"connect_timeout": 0.5, "read_timeout": 0.5, "invoke_timeout": 1.0, **options},
    )
    breaker = CircuitBreaker(failure_threshold=threshold, probe_interval=0.2)
    metrics = Metrics(CollectorRegistry())
    return SageMakerScorer(
        endpoint, num_features=7, breaker=breaker, metrics=metrics, connector_args=connector_args
    )


@pytest.fixture
async def scorer(server: FaultServer, client: ClientName) -> AsyncIterator[SageMakerScorer]:
    scorer = make_scorer(server.url, client)
    await scorer.start()
    yield scorer
    await scorer.close()


def failures(scorer: SageMakerScorer, kind: str) -> float:
    value = scorer.metrics.registry.get_sample_value(
        "bidder_model_call_failures_total", {"scorer": "sagemaker", "kind": kind}
    )
    return value or 0.0


@pytest.mark.parametrize("content_type", ["text/csv", "application/json"])
async def test_scores_equal_the_embedded_model(
    server: FaultServer, seed_model: Path, content_type: str, client: ClientName
) -> None:
    scorer = make_scorer(server.url, client, content_type=content_type)
    await scorer.start()
    try:
        remote = await scorer.score(ROWS)
    finally:
        await scorer.close()
    np.testing.assert_allclose(
        remote, EmbeddedScorer.from_path(seed_model).predict(ROWS), atol=1e-9
    )
    assert remote[0] == pytest.approx(0.000847571762278676, abs=1e-6)
    assert server.requests == 1
    assert (
        scorer.metrics.registry.get_sample_value(
            "bidder_model_call_duration_seconds_count",
            {"scorer": "sagemaker", "variant": "AllTraffic", "outcome": "ok"},
        )
        == 1
    )


@pytest.mark.parametrize(
    "mode",
    ["model_error", "validation_error", "throttled", "service_unavailable", "internal_failure"],
)
async def test_endpoint_errors_are_told_apart(
    server: FaultServer, scorer: SageMakerScorer, mode: str
) -> None:
    server.mode = mode
    with pytest.raises(ScoringError) as caught:
        await scorer.score(ROWS)
    assert caught.value.reason == mode
    assert failures(scorer, mode) == 1
    assert server.requests == 1, "no retry on the hot path"


@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        ("slow", "read_timeout"),
        ("stall", "read_timeout"),
        ("reset", "connection_reset"),
        ("wrong_count", "bad_response"),
    ],
)
async def test_transport_faults_are_told_apart(
    server: FaultServer, scorer: SageMakerScorer, mode: str, kind: str
) -> None:
    server.mode = mode
    server.delay = 0.8
    with pytest.raises(ScoringError) as caught:
        await scorer.score(ROWS)
    assert caught.value.reason == kind
    assert failures(scorer, kind) == 1


async def failure_reason(scorer: SageMakerScorer) -> str:
    """Start a scorer, score once expecting a failure, close it; the failure's kind."""
    await scorer.start()
    try:
        with pytest.raises(ScoringError) as caught:
            await scorer.score(ROWS)
    finally:
        await scorer.close()
    return caught.value.reason


async def test_overall_timeout_bounds_every_call(server: FaultServer, client: ClientName) -> None:
    server.mode = "stall"
    scorer = make_scorer(server.url, client, read_timeout=5.0, invoke_timeout=0.2)
    assert await failure_reason(scorer) == "timeout"


async def test_refused_connection(server: FaultServer, scorer: SageMakerScorer) -> None:
    server.stop()
    with pytest.raises(ScoringError) as caught:
        await scorer.score(ROWS)
    assert caught.value.reason == "connection_refused"


@contextmanager
def unanswered_connects() -> Iterator[str]:
    """A loopback URL whose connects hang: a listener with a backlog of one that never
    accepts, its queue already taken, so the kernel drops every further SYN."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        yield "http://{}:{}".format(*listener.getsockname())


async def test_connect_timeout(client: ClientName) -> None:
    with unanswered_connects() as url:
        scorer = make_scorer(url, client, connect_timeout=0.1, invoke_timeout=2.0)
        assert await failure_reason(scorer) == "connect_timeout"


class FailingResolver(AbstractResolver):
    """Fails every look-up as a resolver does for an unknown name, without any network."""

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[ResolveResult]:
        raise OSError(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        return None


async def test_dns_failure(client: ClientName) -> None:
    scorer = make_scorer(
        "https://vpce-0123-abcd.runtime.sagemaker.us-east-1.vpce.amazonaws.com",
        client,
        connector_args={"resolver": FailingResolver()},
    )
    assert await failure_reason(scorer) == "dns_failure"


async def test_breaker_opens_skips_the_endpoint_and_closes_after_healing(
    server: FaultServer, scorer: SageMakerScorer
) -> None:
    server.mode = "service_unavailable"
    for _ in range(3):
        with pytest.raises(ScoringError):
            await scorer.score(ROWS)
    assert scorer.breaker.state is BreakerState.OPEN
    calls = server.requests
    with pytest.raises(ScoringError) as caught:
        await scorer.score(ROWS)
    assert caught.value.reason == "circuit_open"
    assert server.requests == calls, "an open breaker does not call the endpoint"
    server.mode = "ok"
    await asyncio.sleep(0.25)
    assert len(await scorer.score(ROWS)) == 3
    assert scorer.breaker.state is BreakerState.CLOSED


async def test_a_failed_probe_reopens(server: FaultServer, scorer: SageMakerScorer) -> None:
    server.mode = "model_error"
    for _ in range(3):
        with pytest.raises(ScoringError):
            await scorer.score(ROWS)
    await asyncio.sleep(0.25)
    with pytest.raises(ScoringError) as caught:
        await scorer.score(ROWS)
    assert caught.value.reason == "model_error"
    assert scorer.breaker.state is BreakerState.OPEN


async def test_optional_invoke_arguments_are_sent(server: FaultServer, client: ClientName) -> None:
    scorer = make_scorer(
        server.url,
        client,
        target_variant="blue",
        target_model="m1.tar.gz",
        custom_attributes="campaign=7",
        inference_ids=True,
    )
    await scorer.start()
    try:
        await scorer.score(ROWS)
        first = server.last_headers["x-amzn-sagemaker-inference-id"]
        await scorer.score(ROWS)
    finally:
        await scorer.close()
    headers = server.last_headers
    assert headers["x-amzn-sagemaker-target-variant"] == "blue"
    assert headers["x-amzn-sagemaker-target-model"] == "m1.tar.gz"
    assert headers["x-amzn-sagemaker-custom-attributes"] == "campaign=7"
    assert headers["x-amzn-sagemaker-inference-id"] != first
    assert headers["content-type"] == "text/csv"
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert scorer.model_version == "seed/blue"


async def test_no_region_is_refused_at_start(
    client: ClientName, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    scorer = make_scorer("http://127.0.0.1:9", client)
    with pytest.raises(ConfigurationError, match="needs a region"):
        await scorer.start()
    await scorer.close()


async def test_no_credentials_is_refused_at_start(
    client: ClientName, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    for variable in (
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("BOTO_CONFIG", str(tmp_path / "none"))
    # The chain's last source is the instance metadata service: never asked from a test.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    scorer = make_scorer("http://127.0.0.1:9", client)
    with pytest.raises(ConfigurationError, match="no AWS credentials"):
        await scorer.start()
    await scorer.close()
