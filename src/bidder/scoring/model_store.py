"""Models kept in S3: each object version is fetched once into a local cache, then loaded
like any model file.

Why a local copy rather than parsing from the stream: the loaders read archives and
directories, a reload must not depend on S3 staying reachable while a model is parsed, and
a restart on the same version costs no download. The cache is keyed by object version (or
ETag when the bucket is not versioned), so a new upload to the same key is a new model and
an old version can be pinned.

Downloads happen at start-up and on reload, never on the bid path: one client per fetch is
fine here. Credentials come from the standard AWS chain.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from bidder.errors import ModelLoadError

_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>.+)$")
_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]")
_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        match = _S3_URI.match(uri)
        if match is None:
            raise ModelLoadError(f"{uri!r} is not an s3://bucket/key URI")
        return cls(match["bucket"], match["key"])

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class FetchedModel:
    path: Path
    # S3's version id, or None when the bucket does not version its objects.
    version_id: str | None


async def fetch_model(
    uri: str,
    *,
    version_id: str | None,
    cache_dir: Path,
    max_bytes: int,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> FetchedModel:
    """The local copy of `uri` at `version_id` (default: the newest version), downloaded
    unless the cache already holds it. Raises `ModelLoadError` naming the object and why."""
    location = S3Location.parse(uri)
    version = {"VersionId": version_id} if version_id else {}
    try:
        async with get_session().create_client(
            "s3", region_name=region, endpoint_url=endpoint_url
        ) as s3:
            head = await s3.head_object(Bucket=location.bucket, Key=location.key, **version)
            found_version = _version_of(head)
            size = int(head["ContentLength"])
            if size > max_bytes:
                raise ModelLoadError(
                    f"{location} is {size} bytes, more than the limit of {max_bytes}"
                )
            target = _cache_path(cache_dir, location, found_version or head["ETag"])
            if target.is_file() and target.stat().st_size == size:
                return FetchedModel(target, found_version)
            # Pin the version seen by head_object: an upload in between must not mix in.
            pinned = {"VersionId": found_version} if found_version else {}
            response = await s3.get_object(Bucket=location.bucket, Key=location.key, **pinned)
            await _download(response["Body"], target, size, location)
    except (ClientError, BotoCoreError) as exc:
        raise ModelLoadError(f"{location}: {_describe(exc)}") from exc
    return FetchedModel(target, found_version)


def _version_of(head: dict[str, Any]) -> str | None:
    version = head.get("VersionId")
    # Unversioned buckets answer no version id, or the literal "null".
    return None if version in (None, "null") else str(version)


def _cache_path(cache_dir: Path, location: S3Location, version: str) -> Path:
    where = hashlib.sha256(f"{location.bucket}/{location.key}".encode()).hexdigest()[:16]
    name = _UNSAFE_IN_FILENAME.sub("_", PurePosixPath(location.key).name) or "model"
    return cache_dir / where / _UNSAFE_IN_FILENAME.sub("_", version.strip('"')) / name


async def _download(body: Any, target: Path, size: int, location: S3Location) -> None:
    """Stream to a temporary file beside `target` and rename it in place once complete, so
    that a cached file is always whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    received = 0
    try:
        with partial.open("wb") as file:
            async with body as stream:
                while chunk := await stream.read(_CHUNK_BYTES):
                    received += len(chunk)
                    if received > size:
                        raise ModelLoadError(f"{location} is longer than its {size} bytes")
                    await asyncio.to_thread(file.write, chunk)
        if received != size:
            raise ModelLoadError(f"{location}: received {received} of {size} bytes")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def _describe(exc: ClientError | BotoCoreError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "error")
        if code in ("404", "NoSuchKey", "NoSuchVersion"):
            return "no such object (or version)"
        if code in ("403", "AccessDenied"):
            return "access denied (the role needs s3:GetObject and s3:GetObjectVersion)"
        return f"{code}: {error.get('Message', str(exc))}"
    return str(exc)
