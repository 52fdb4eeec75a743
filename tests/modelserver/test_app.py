"""`bidder model-server` over a real uvicorn server: SageMaker's container contract."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from aiobotocore.session import get_session

from bidder.modelserver import ModelServerApp, create_model_server_app
from bidder.modelserver.app import MODEL_DIR_VARIABLE
from bidder.scoring import EmbeddedScorer
from bidder.scoring.compiled import BATCH_PREDICTOR_MIN_ROWS
from bidder.scoring.payloads import encode_rows
from tests.conftest import LiveServer, free_port

SEED_ROW = b"2,0,0.0,7.0,3.0,20.0,2"
CSV = {"content-type": "text/csv"}
SEED_SCORE = 0.000847571762278676


@pytest.fixture(scope="module")
def server(seed_model: Path) -> Iterator[LiveServer]:
    app = ModelServerApp(EmbeddedScorer.from_path(seed_model), max_payload_bytes=64 * 1024)
    with LiveServer(app, free_port()) as running:
        yield running


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client


def test_ping(client: httpx.Client) -> None:
    response = client.get("/ping")
    assert response.status_code == 200
    assert response.content == b""


def test_csv_invocation_answers_like_sagemaker_xgboost(client: httpx.Client) -> None:
    response = client.post("/invocations", content=SEED_ROW, headers={"content-type": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv"
    assert abs(float(response.text) - SEED_SCORE) < 1e-6


def test_several_rows_give_several_scores(client: httpx.Client) -> None:
    body = SEED_ROW + b"\n1,2,,4,5,6,7\n\n6,23,1,2,3,4,5\n"
    response = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert len(response.text.splitlines()) == 3


def test_json_invocation(client: httpx.Client) -> None:
    response = client.post(
        "/invocations",
        json={"instances": [{"features": [2, 0, 0.0, 7.0, 3.0, 20.0, 2]}]},
        headers={"accept": "application/json"},
    )
    assert response.status_code == 200
    [prediction] = response.json()["predictions"]
    assert abs(prediction["score"] - SEED_SCORE) < 1e-6


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        ({"content-type": "text/plain"}, SEED_ROW, 415, "content type"),
        ({"content-type": "text/csv", "accept": "text/html"}, SEED_ROW, 406, "accept"),
        ({"content-type": "text/csv"}, b"1,2,3", 400, "row 1: 3 values, the model takes 7"),
        ({"content-type": "text/csv"}, b"1,2,x,4,5,6,7", 400, "row 1: not a row of numbers"),
        ({"content-type": "text/csv"}, b"", 400, "no rows"),
        ({"content-type": "application/json"}, b'{"rows": []}', 400, "invalid JSON payload"),
        ({"content-type": "text/csv"}, b"1," * 40_000, 413, "payload larger than"),
    ],
)
def test_bad_invocations(
    client: httpx.Client, headers: dict[str, str], body: bytes, status: int, message: str
) -> None:
    response = client.post("/invocations", content=body, headers=headers)
    assert response.status_code == status
    assert message in response.json()["message"]


def test_unknown_route_and_method(client: httpx.Client) -> None:
    assert client.get("/nowhere").status_code == 404
    assert client.get("/invocations").status_code == 405


async def test_runtime_api_path_serves_unmodified_aiobotocore(
    server: LiveServer, aws_credentials: None
) -> None:
    session = get_session()
    async with session.create_client(
        "sagemaker-runtime", region_name="us-east-1", endpoint_url=server.url
    ) as client:
        response = await client.invoke_endpoint(
            EndpointName="seed", ContentType="text/csv", Body=SEED_ROW
        )
        body = await response["Body"].read()
        assert abs(float(body) - SEED_SCORE) < 1e-6
        assert response["InvokedProductionVariant"] == "AllTraffic"
        with pytest.raises(client.exceptions.ModelError):
            await client.invoke_endpoint(EndpointName="seed", ContentType="text/csv", Body=b"1,2")


def test_serve_entrypoint_runs_as_sagemaker_starts_it(seed_model: Path, tmp_path: Path) -> None:
    """`serve` with SAGEMAKER_BIND_TO_PORT and a model directory, as a plain process."""
    import tarfile

    with tarfile.open(seed_model) as archive:
        archive.extractall(tmp_path, filter="data")
    port = free_port()
    env = {**os.environ, "SAGEMAKER_BIND_TO_PORT": str(port)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bidder",
            "model-server",
            "serve",
            "--model-dir",
            str(tmp_path),
            "--host",
            "127.0.0.1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        response = httpx.post(
            f"http://127.0.0.1:{port}/invocations",
            content=SEED_ROW,
            headers={"content-type": "text/csv"},
        )
        assert abs(float(response.text) - SEED_SCORE) < 1e-6
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The factory configures logging as a server process would; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_the_factory_compiles_the_trees_as_the_settings_say(
    seed_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MODEL_DIR_VARIABLE, str(seed_model))
    monkeypatch.setenv("BIDDER_COMPILE_CACHE_DIR", str(tmp_path))
    compiled = create_model_server_app()
    assert compiled.scorer.backend == "compiled"
    assert len(list(tmp_path.glob("*.so"))) == 1
    monkeypatch.setenv("BIDDER_COMPILE_MODEL", "false")
    assert create_model_server_app().scorer.backend == "gtil"

    # A batch (tl2cgen's batch predictor) scores each row as that row alone (the generated
    # function, called for one row) does, over HTTP.
    rng = np.random.default_rng(7)
    rows = rng.integers(0, 30, size=(BATCH_PREDICTOR_MIN_ROWS + 8, 7)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.2] = np.nan
    with (
        LiveServer(compiled, free_port()) as server,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        batch = client.post("/invocations", content=encode_rows(rows, "text/csv"), headers=CSV)
        alone = [
            float(
                client.post(
                    "/invocations", content=encode_rows(row[None], "text/csv"), headers=CSV
                ).text
            )
            for row in rows
        ]
    assert batch.status_code == 200
    np.testing.assert_allclose([float(s) for s in batch.text.split()], alone, rtol=0, atol=1e-6)
