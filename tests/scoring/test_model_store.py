"""Models in S3, fetched by version against a real S3-compatible server on loopback."""

from __future__ import annotations

import asyncio
import io
import re
import tarfile
from pathlib import Path

import boto3
import pytest

from bidder.errors import ModelLoadError
from bidder.scoring.model_store import fetch_model
from tests.conftest import MODEL_BUCKET as BUCKET


def upload(endpoint: str, key: str, files: dict[str, bytes]) -> str:
    """A model.tar.gz holding `files`, uploaded to `key`; returns its version id."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    answer = boto3.client("s3", endpoint_url=endpoint).put_object(
        Bucket=BUCKET, Key=key, Body=buffer.getvalue()
    )
    version: str = answer["VersionId"]
    return version


def fetch(endpoint: str, cache: Path, uri: str, version: str | None = None) -> Path:
    fetched = asyncio.run(
        fetch_model(
            uri, version_id=version, cache_dir=cache, max_bytes=1 << 20, endpoint_url=endpoint
        )
    )
    return fetched.path


def test_newest_version_by_default_and_any_version_when_pinned(
    s3_endpoint: str, tmp_path: Path
) -> None:
    first = upload(s3_endpoint, "bidder/model.tar.gz", {"a": b"first"})
    second = upload(s3_endpoint, "bidder/model.tar.gz", {"a": b"second, longer"})
    uri = f"s3://{BUCKET}/bidder/model.tar.gz"
    newest = fetch(s3_endpoint, tmp_path, uri)
    assert newest.name == "model.tar.gz"
    assert _member(newest) == b"second, longer"
    assert second in str(newest)
    pinned = fetch(s3_endpoint, tmp_path, uri, version=first)
    assert _member(pinned) == b"first"
    assert pinned != newest
    # A version already in the cache is not fetched again: the same whole file is reused.
    before = newest.stat().st_mtime_ns
    assert fetch(s3_endpoint, tmp_path, uri) == newest
    assert newest.stat().st_mtime_ns == before
    assert not list(tmp_path.rglob("*.partial"))


def _member(path: Path) -> bytes:
    with tarfile.open(path) as archive:
        member = archive.extractfile("a")
        assert member is not None
        return member.read()


@pytest.mark.parametrize(
    ("uri", "version", "message"),
    [
        ("s3://models/none.tar.gz", None, "s3://models/none.tar.gz: no such object"),
        ("s3://models/model.tar.gz", "not-a-version", "no such object (or version)"),
        ("s3://elsewhere/model.tar.gz", None, "s3://elsewhere/model.tar.gz:"),
        ("https://models/model.tar.gz", None, "is not an s3://bucket/key URI"),
    ],
)
def test_what_cannot_be_fetched_is_named(
    s3_endpoint: str, tmp_path: Path, uri: str, version: str | None, message: str
) -> None:
    upload(s3_endpoint, "model.tar.gz", {"a": b"model"})
    with pytest.raises(ModelLoadError, match=re.escape(message)):
        fetch(s3_endpoint, tmp_path, uri, version)


def test_an_object_over_the_limit_is_refused_before_download(
    s3_endpoint: str, tmp_path: Path
) -> None:
    upload(s3_endpoint, "big.tar.gz", {"a": bytes(range(256)) * 8192})
    with pytest.raises(ModelLoadError, match="more than the limit of 1000"):
        asyncio.run(
            fetch_model(
                f"s3://{BUCKET}/big.tar.gz",
                version_id=None,
                cache_dir=tmp_path,
                max_bytes=1000,
                endpoint_url=s3_endpoint,
            )
        )
    assert not any(path.is_file() for path in tmp_path.rglob("*"))
