"""Each image's command, run as a plain process with the image's environment: what the
container would run, with loopback and free ports substituted for its network."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import free_port
from tests.containers.images import BIDDER_DOCKERFILE, MODEL_SERVER_DOCKERFILE, Image, read_image
from tests.modelserver.test_app import SEED_ROW, SEED_SCORE

START_TIMEOUT_SECONDS = 60


def container_env(image: Image, **overrides: str) -> dict[str, str]:
    """This process's environment without its own BIDDER_* values, then the image's ENV
    (its PATH aside: the virtualenv is the one running the tests), then the overrides."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("BIDDER_")}
    env.update({name: value for name, value in image.env.items() if name != "PATH"})
    env.update(overrides)
    return env


def as_process(command: list[str]) -> list[str]:
    """The image's `bidder` console script, run by this interpreter."""
    assert command[0] == "bidder", command
    return [sys.executable, "-m", "bidder", *command[1:]]


@contextmanager
def running(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """The process, stopped with SIGTERM at the end as `docker stop` does; it must exit 0."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=40)[0]
    assert process.returncode == 0, output


def wait_for(check: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, "the process exited during start-up"
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("not up in time")


def ready_workers(metrics_url: str) -> float:
    """`bidder_ready`, the number of ready workers; 0 until the first worker has written it."""
    for line in httpx.get(metrics_url, timeout=2).text.splitlines():
        if line.startswith("bidder_ready "):
            return float(line.split()[1])
    return 0.0


def healthcheck(image: Image, env: dict[str, str]) -> int:
    """Runs the image's HEALTHCHECK command; Docker reads exit 0 as healthy."""
    command = image.healthcheck()
    assert command[0] == "python"
    return subprocess.run([sys.executable, *command[1:]], env=env, timeout=10).returncode


def test_bidder_entrypoint_serves_bids_health_and_metrics_on_its_ports(tmp_path: Path) -> None:
    image = read_image(BIDDER_DOCKERFILE)
    port, metrics_port = free_port(), free_port()
    env = container_env(
        image,
        BIDDER_HOST="127.0.0.1",
        BIDDER_PORT=str(port),
        BIDDER_METRICS_PORT=str(metrics_port),
        BIDDER_COMPILE_CACHE_DIR=str(tmp_path / "compiled"),
        # As `docker run -e BIDDER_WORKERS=2`: the entrypoint takes it from the environment.
        BIDDER_WORKERS="2",
    )
    url, metrics_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
    with running(as_process(image.command()), env) as process:
        wait_for(lambda: ready_workers(metrics_url) == 2, process)
        # A worker is ready once its start-up is done, a moment before uvicorn listens.
        wait_for(lambda: httpx.get(f"{url}/healthz", timeout=5).status_code == 200, process)
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        assert healthcheck(image, env) == 0
        # /metrics moved to its own port, out of the bid traffic's way.
        assert httpx.get(f"{url}/metrics", timeout=5).status_code == 404
    assert healthcheck(image, env) != 0, "a stopped bidder is unhealthy"


def test_model_server_command_serves_a_model_as_sagemaker_unpacks_it(
    seed_model: Path, tmp_path: Path
) -> None:
    image = read_image(MODEL_SERVER_DOCKERFILE)
    model_dir = tmp_path / "model"
    # SageMaker extracts model.tar.gz into /opt/ml/model before starting the container.
    with tarfile.open(seed_model) as archive:
        archive.extractall(model_dir, filter="data")
    port = free_port()
    env = container_env(image, SAGEMAKER_BIND_TO_PORT=str(port))
    command = [*as_process(image.command()), "--model-dir", str(model_dir), "--host", "127.0.0.1"]
    url = f"http://127.0.0.1:{port}"
    with running(command, env) as process:
        wait_for(lambda: httpx.get(f"{url}/ping", timeout=2).status_code == 200, process)
        assert healthcheck(image, env) == 0
        response = httpx.post(
            f"{url}/invocations", content=SEED_ROW, headers={"content-type": "text/csv"}, timeout=5
        )
        assert response.status_code == 200
        assert abs(float(response.text) - SEED_SCORE) < 1e-6
    assert healthcheck(image, env) != 0
