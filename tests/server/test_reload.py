"""Model reload: a new model is swapped in under load without a failed request; a model
that cannot serve is refused and the old one keeps serving; SIGHUP and the admin endpoint
trigger it, the endpoint only with its bearer token."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bidder.settings import Settings
from tests.conftest import MODEL_BUCKET, SEED_FEATURE_SPEC, SEED_MODEL, LiveServer, free_port
from tests.scoring.test_model_store import upload
from tests.server.test_bid_endpoint import banner_request

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "src" / "bidder" / "defaults" / "model"
TOKEN = "reload-token-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def seed_model_dir(directory: Path) -> Path:
    """The seed model as SageMaker would unpack it, with the feature spec it was trained on."""
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(SEED_MODEL) as archive:
        archive.extractall(directory, filter="data")
    shutil.copy(SEED_FEATURE_SPEC, directory / "feature_spec.json")
    return directory


def settings(**overrides: object) -> Settings:
    return Settings.model_validate({"admin_token": TOKEN, **overrides})


def model_version(url: str) -> str:
    version: str = httpx.get(f"{url}/readyz").json()["model_version"]
    return version


def test_reload_under_load_fails_no_request(
    live_server: Callable[[Settings], LiveServer], tmp_path: Path
) -> None:
    server = live_server(settings())
    before = model_version(server.url)
    answers, reload = asyncio.run(_reload_under_load(server.url, seed_model_dir(tmp_path)))
    assert reload.status_code == 200, reload.text
    after = reload.json()["model_version"]
    assert after != before
    assert model_version(server.url) == after
    assert set(answers) <= {200, 204}, f"answers during the reload: {answers}"
    assert sum(answers.values()) > 100
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'bidder_model_reloads_total{outcome="ok"} 1.0' in metrics
    assert f'version="{after}"' in metrics


async def _reload_under_load(url: str, model: Path) -> tuple[dict[int, int], httpx.Response]:
    body = banner_request()
    answers: dict[int, int] = {}
    stop = asyncio.Event()

    async def bid(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            status = (await client.post("/openrtb2/bid", json=body)).status_code
            answers[status] = answers.get(status, 0) + 1

    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        bidders = [asyncio.create_task(bid(client)) for _ in range(8)]
        await asyncio.sleep(0.5)
        reload = await client.post("/admin/reload", json={"model_path": str(model)}, headers=AUTH)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*bidders)
    return answers, reload


@pytest.mark.parametrize(
    ("make_model", "named"),
    [
        (lambda tmp: tmp / "nowhere", "nowhere"),
        # The seed archive has no feature spec: nothing says what its 7 columns are.
        (lambda tmp: SEED_MODEL, "feature_spec.json"),
        (lambda tmp: _write(tmp / "garbage" / "xgboost-model", b"\x00not a model" * 20), "model"),
        (lambda tmp: _write(tmp / "pickled" / "model.pkl", b"\x80\x04cos\nsystem\n."), "pickle"),
    ],
    ids=["missing path", "no feature spec", "not a model", "foreign pickle"],
)
def test_a_refused_model_leaves_the_old_one_serving(
    live_server: Callable[[Settings], LiveServer],
    tmp_path: Path,
    make_model: Callable[[Path], Path],
    named: str,
) -> None:
    server = live_server(settings())
    before = model_version(server.url)
    refused = httpx.post(
        f"{server.url}/admin/reload",
        json={"model_path": str(make_model(tmp_path))},
        headers=AUTH,
    )
    assert refused.status_code == 422
    assert "refused" in refused.json()["error"]
    assert named in refused.json()["error"]
    assert model_version(server.url) == before
    bid = httpx.post(f"{server.url}/openrtb2/bid", json=banner_request())
    assert bid.status_code in (200, 204)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'bidder_model_reloads_total{outcome="refused"} 1.0' in metrics


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path.parent


def test_the_admin_endpoint_exists_only_with_a_token_and_wants_it(
    live_server: Callable[[Settings], LiveServer],
) -> None:
    without_token = live_server(Settings())
    assert httpx.post(f"{without_token.url}/admin/reload").status_code == 404
    with_token = live_server(settings())
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
        answer = httpx.post(f"{with_token.url}/admin/reload", headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"] == "Bearer"


def test_a_reload_request_naming_two_sources_is_refused(
    live_server: Callable[[Settings], LiveServer],
) -> None:
    server = live_server(settings())
    answer = httpx.post(
        f"{server.url}/admin/reload",
        json={"model_path": "/models/a", "model_s3_uri": "s3://models/b.tar.gz"},
        headers=AUTH,
    )
    assert answer.status_code == 422
    assert "not both" in answer.text


def test_reload_fetches_the_newest_s3_version_or_the_one_named(
    live_server: Callable[[Settings], LiveServer], s3_endpoint: str, tmp_path: Path
) -> None:
    key = "bidder/model.tar.gz"
    first = upload(s3_endpoint, key, _files(DEFAULT_MODEL))
    server = live_server(
        settings(
            model_s3_uri=f"s3://{MODEL_BUCKET}/{key}",
            model_s3_endpoint_url=s3_endpoint,
            model_cache_dir=tmp_path / "cache",
        )
    )
    default_version = model_version(server.url)
    upload(s3_endpoint, key, _files(seed_model_dir(tmp_path / "seed")))
    newest = httpx.post(f"{server.url}/admin/reload", headers=AUTH)
    assert newest.status_code == 200, newest.text
    assert newest.json()["model_version"] != default_version
    back = httpx.post(
        f"{server.url}/admin/reload", json={"model_s3_version_id": first}, headers=AUTH
    )
    assert back.status_code == 200, back.text
    assert model_version(server.url) == default_version
    missing = httpx.post(
        f"{server.url}/admin/reload",
        json={"model_s3_uri": f"s3://{MODEL_BUCKET}/nothing.tar.gz"},
        headers=AUTH,
    )
    assert missing.status_code == 422
    assert "nothing.tar.gz" in missing.json()["error"]
    assert model_version(server.url) == default_version


def _files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


@dataclass
class _Served:
    url: str
    process: subprocess.Popen[str]
    output: str = ""


@contextlib.contextmanager
def _bidder_serve(workers: int, **variables: str) -> Iterator[_Served]:
    """`bidder serve` with the admin token and `variables` (BIDDER_MODEL_PATH only if given
    there), stopped with SIGTERM on leaving, after which it must have exited 0."""
    port = free_port()
    env = {**os.environ, "BIDDER_ADMIN_TOKEN": TOKEN}
    env.pop("BIDDER_MODEL_PATH", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "bidder", "serve", "--port", str(port), "--workers", str(workers)],
        env={**env, **variables},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = _Served(f"http://127.0.0.1:{port}", process)
    try:
        yield served
        assert process.poll() is None, "a reload must not stop the server"
    finally:
        process.send_signal(signal.SIGTERM)
        served.output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, served.output


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_or_the_admin_endpoint_reload_the_configured_path(
    tmp_path: Path, workers: int
) -> None:
    """One worker swaps its model in place on SIGHUP; with several, the admin endpoint has
    uvicorn's supervisor replace them (its SIGHUP), one at a time."""
    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL, model)
    with _bidder_serve(workers, BIDDER_MODEL_PATH=str(model)) as served:
        before = _wait_until_ready(served.url)
        shutil.rmtree(model)
        seed_model_dir(model)
        if workers == 1:
            served.process.send_signal(signal.SIGHUP)
        else:
            reload = httpx.post(f"{served.url}/admin/reload", headers=AUTH)
            assert reload.status_code == 202
        _wait_until_every_answer_is_new(served.url, before, answers_in_a_row=10 * workers)
    if workers == 1:
        assert '"message":"model reloaded"' in served.output


def test_with_several_workers_a_model_named_in_the_request_replaces_every_workers(
    tmp_path: Path,
) -> None:
    """The worker that takes the request loads the named model first (a bad one is refused
    there, and nothing restarts); then every worker is replaced and starts on it."""
    with _bidder_serve(2) as served:
        before = _wait_until_ready(served.url)
        missing = httpx.post(
            f"{served.url}/admin/reload", json={"model_path": str(tmp_path / "none")}, headers=AUTH
        )
        assert missing.status_code == 422, missing.text
        assert "none" in missing.json()["error"]
        seed = seed_model_dir(tmp_path / "seed")
        chosen = httpx.post(
            f"{served.url}/admin/reload", json={"model_path": str(seed)}, headers=AUTH, timeout=60
        )
        assert chosen.status_code == 202, chosen.text
        _wait_until_every_answer_is_new(served.url, before, answers_in_a_row=20)
    leftovers = Path(tempfile.gettempdir()).glob(f"bidder-model-choice-{served.process.pid}*")
    assert not list(leftovers)


def _wait_until_every_answer_is_new(url: str, before: str, answers_in_a_row: int) -> None:
    new_in_a_row = 0
    deadline = time.monotonic() + 60
    while new_in_a_row < answers_in_a_row:
        assert time.monotonic() < deadline, "the new model did not come into service"
        try:
            answer = httpx.get(f"{url}/readyz", timeout=2)
        except httpx.TransportError as error:
            raise AssertionError(
                f"the listener must stay open during a reload: {error!r}"
            ) from error
        if answer.status_code == 200 and answer.json()["model_version"] != before:
            new_in_a_row += 1
        else:
            new_in_a_row = 0
            time.sleep(0.05)


def _wait_until_ready(url: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{url}/readyz", timeout=1)
            if answer.status_code == 200:
                version: str = answer.json()["model_version"]
                return version
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("the bidder did not become ready")
