"""Shared fixtures: the corpus and seed model beside the project, and a real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import uvicorn
from moto.server import ThreadedMotoServer

from bidder.server import BidderApp
from bidder.server.protocol import BidderHttpProtocol
from bidder.settings import Settings
from tests.faults import FaultServer, fault_server

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
SEED_MODEL = SHARED / "seed-model" / "model.tar.gz"
SEED_FEATURE_SPEC = PROJECT_ROOT / "examples" / "seed-model" / "feature_spec.json"
CORPUS = SHARED / "openrtb-corpus"
MODEL_BUCKET = "models"

# Shedding on the event loop's lag is off in the servers tests start (in-process and child
# processes alike) unless a test asks for it: an in-process server shares the interpreter
# with its test's clients, whose work makes its loop late, and a shed answer would turn a
# test of something else into a test of the machine's load. Its own tests set it.
os.environ.setdefault("BIDDER_ADMISSION_MAX_LOOP_LAG_MS", "10000")


@pytest.fixture(scope="session")
def seed_model() -> Path:
    assert SEED_MODEL.is_file(), (
        f"the seed model must be at {SEED_MODEL} (../shared beside the project)"
    )
    return SEED_MODEL


@pytest.fixture(scope="session")
def corpus() -> Path:
    assert CORPUS.is_dir(), f"the OpenRTB corpus must be at {CORPUS} (../shared beside the project)"
    return CORPUS


@contextlib.contextmanager
def held_port() -> Iterator[int]:
    """A loopback port another socket listens on while the block runs."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port: int = holder.getsockname()[1]
        yield port


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LiveServer:
    """A real uvicorn server on a loopback port, running in a thread with its own loop."""

    def __init__(self, app: Any, port: int, http: Any = BidderHttpProtocol) -> None:
        """`http` is uvicorn's protocol: by default the one `bidder serve` runs."""
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        settings = getattr(app, "settings", None)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            http=http,
            loop="asyncio",
            access_log=False,
            log_config=None,
            lifespan="on",
            # As `bidder serve` has it, for a bidder's app.
            **(
                {"timeout_keep_alive": settings.keepalive_timeout_seconds}
                if isinstance(settings, Settings)
                else {}
            ),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def __enter__(self) -> LiveServer:
        self.thread.start()
        for _ in range(500):
            if self.server.started or not self.thread.is_alive():
                break
            threading.Event().wait(0.01)
        assert self.server.started, "the server did not start"
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server() -> Iterator[Callable[[Settings], LiveServer]]:
    """Starts a bidder for the given settings; every server started is stopped at the end."""
    started: list[LiveServer] = []

    def start(settings: Settings) -> LiveServer:
        server = LiveServer(BidderApp(settings), free_port())
        started.append(server.__enter__())
        return server

    yield start
    for server in started:
        server.__exit__()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Static credentials through the standard AWS chain (the environment), for the loopback
    stand-ins of AWS services, which check no signature."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def endpoint(seed_model: Path, aws_credentials: None) -> Iterator[FaultServer]:
    """A SageMaker endpoint stand-in serving the seed model, whose faults tests switch on."""
    with fault_server(seed_model, free_port()) as server:
        yield server


@pytest.fixture
def s3_endpoint(aws_credentials: None) -> Iterator[str]:
    """moto's S3 server on a loopback port, with a versioned bucket `MODEL_BUCKET`."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=MODEL_BUCKET)
    s3.put_bucket_versioning(Bucket=MODEL_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    yield endpoint
    server.stop()
