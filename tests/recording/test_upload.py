"""Uploads to a real S3-compatible server on loopback (moto), which goes down and comes back."""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import orjson
import pytest
from moto.server import ThreadedMotoServer
from prometheus_client import CollectorRegistry

from bidder.recording import Recorder, create_recorder
from bidder.settings import Settings
from bidder.telemetry import Metrics
from tests.conftest import free_port
from tests.recording.helpers import captures, closed_files, partial_files

BUCKET = "recordings-bucket"
PREFIX = "traffic/eu"
KEY_NAME = re.compile(
    r"^traffic/eu/\d{4}/\d{2}/\d{2}/\d{2}/\d{8}T\d{6}\.\d{6}Z-\d+-[0-9a-f]+-\d+\.jsonl\.gz$"
)


class S3Server:
    """moto's server on one loopback port, stopped and started again on the same port (its
    buckets and keys live in this process, so they survive)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadedMotoServer | None = None

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        assert self._server is not None
        self._server.stop()
        self._server = None


@pytest.fixture
def s3(aws_credentials: None) -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    if server._server is not None:
        server.stop()


def recorder(directory: Path, s3: S3Server, kms_key: str) -> Recorder:
    settings = Settings(
        record_dir=directory,
        record_sample_rate=1.0,
        record_user_ids="keep",
        record_max_file_seconds=0.1,
        record_flush_seconds=0.05,
        record_s3_bucket=BUCKET,
        record_s3_prefix=PREFIX,
        record_s3_kms_key_id=kms_key,
        record_s3_endpoint_url=s3.url,
        record_s3_timeout_seconds=2.0,
        record_s3_retry_min_seconds=0.05,
        record_s3_retry_max_seconds=0.2,
    )
    made = create_recorder(settings, Metrics(CollectorRegistry()))
    assert made is not None
    return made


async def until(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    """Polls `condition`, letting the recorder's tasks run, until it holds."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition did not come true in time")


def ids_of(batch: int, count: int) -> list[str]:
    return [orjson.loads(capture[2])["id"] for capture in captures(count, seed=batch)]


async def test_no_file_is_lost_while_s3_is_down_and_each_arrives_encrypted(
    tmp_path: Path, s3: S3Server
) -> None:
    client = boto3.client("s3", endpoint_url=s3.url)
    client.create_bucket(Bucket=BUCKET)
    kms_key = boto3.client("kms", endpoint_url=s3.url).create_key()["KeyMetadata"]["KeyId"]

    def uploaded() -> list[str]:
        listing = client.list_objects_v2(Bucket=BUCKET)
        return [entry["Key"] for entry in listing.get("Contents", [])]

    # S3 up: closed files are uploaded, then deleted.
    first = recorder(tmp_path, s3, kms_key)
    await first.start()
    for capture in captures(40, seed=1):
        first.put(capture)
    await until(lambda: len(uploaded()) >= 1 and not closed_files(tmp_path))

    # S3 down: uploads fail and are retried; closed files stay in the directory.
    s3.stop()
    for capture in captures(40, seed=2):
        first.put(capture)
    await until(lambda: len(closed_files(tmp_path)) >= 1)
    await asyncio.sleep(0.5)  # several failed tries with backoff
    assert closed_files(tmp_path)
    assert not await first.close(grace=1.0)
    left = closed_files(tmp_path)
    assert left

    # S3 back, a new process: what was left is uploaded at start, then its own files.
    s3.start()
    second = recorder(tmp_path, s3, kms_key)
    await second.start()
    for capture in captures(40, seed=3):
        second.put(capture)
    assert await second.close(grace=10.0)
    assert not closed_files(tmp_path)
    assert not partial_files(tmp_path)

    keys = uploaded()
    assert {Path(key).name for key in keys} >= {path.name for path in left}
    records: list[str] = []
    for key in sorted(keys):
        assert KEY_NAME.match(key), key
        head = client.head_object(Bucket=BUCKET, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"].endswith(kms_key)
        data = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        records += [orjson.loads(line)["id"] for line in gzip.decompress(data).splitlines()]
    assert sorted(records) == sorted(ids_of(1, 40) + ids_of(2, 40) + ids_of(3, 40))
