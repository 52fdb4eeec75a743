"""Uploading closed recordings to S3, from the recorder's directory used as a spool.

A closed file is uploaded under `<prefix>/YYYY/MM/DD/HH/<file name>`, the hour being the
file's start time in UTC, with SSE-KMS when a key is configured, and deleted only once
S3 has confirmed the upload. A failed upload leaves every file where it is and is tried
again after a backoff that doubles from `retry_min` to `retry_max`; whatever a process
could not upload before it stopped is uploaded by the next one to start with the same
directory. One aiobotocore client, opened at start-up, credentials from the standard AWS
chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from bidder.recording.files import start_time
from bidder.telemetry import Throttle

CONTENT_TYPE: Final = "application/gzip"

logger = logging.getLogger("bidder.recording")


@dataclass(frozen=True)
class S3Destination:
    bucket: str
    prefix: str = ""
    kms_key_id: str | None = None
    endpoint_url: str | None = None
    timeout: float = 30.0  # one upload: connect, send and answer
    retry_min: float = 1.0
    retry_max: float = 60.0

    def key(self, path: Path) -> str | None:
        """The object key of a recording, or None for a file not named by a recorder."""
        started = start_time(path)
        if started is None:
            return None
        hour = started.strftime("%Y/%m/%d/%H")
        prefix = self.prefix.strip("/")
        return f"{prefix}/{hour}/{path.name}" if prefix else f"{hour}/{path.name}"

    def put_arguments(self) -> dict[str, str]:
        arguments = {"Bucket": self.bucket, "ContentType": CONTENT_TYPE}
        if self.kms_key_id is not None:
            arguments |= {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}
        return arguments


class S3Uploader:
    """Uploads the files `pending()` lists, whenever `notify()` says one was closed, and
    again after each backoff while uploads fail."""

    def __init__(self, destination: S3Destination, pending: Callable[[], list[Path]]) -> None:
        self.destination = destination
        self.pending = pending
        self._arguments = destination.put_arguments()
        self._client: Any = None
        self._stack = AsyncExitStack()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._throttle = Throttle(interval=60.0)

    async def start(self) -> None:
        config = AioConfig(
            connect_timeout=self.destination.timeout,
            read_timeout=self.destination.timeout,
            # The backoff below retries; botocore's own retries would only hold a file longer.
            retries={"total_max_attempts": 1, "mode": "standard"},
        )
        self._client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3", endpoint_url=self.destination.endpoint_url, config=config
            )
        )
        self._loop = asyncio.get_running_loop()
        self._wake.set()  # what an earlier process left behind goes first
        self._task = asyncio.create_task(self._run(), name="bidder-recording-upload")

    def notify(self) -> None:
        """A file was closed: upload it soon. Safe from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def close(self, grace: float) -> bool:
        """Uploads what is left within `grace` seconds, then closes the client; False if some
        file stays for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        uploaded = False
        try:
            async with asyncio.timeout(grace):
                uploaded = await self.upload_pending()
        except TimeoutError:
            pass
        await self._stack.aclose()
        if not uploaded:
            logger.warning("recordings left in the directory for the next start to upload")
        return uploaded

    async def upload_pending(self) -> bool:
        """Uploads every pending file, oldest first; False at the first that fails."""
        for path in await asyncio.to_thread(self.pending):
            try:
                await self._upload(path)
            except FileNotFoundError:
                continue  # uploaded by another process that adopted it
            except (BotoCoreError, ClientError, aiohttp.ClientError, OSError, TimeoutError):
                if self._throttle.allow("upload"):
                    logger.warning(
                        "recording upload failed; retrying later",
                        exc_info=True,
                        extra={"file": path.name},
                    )
                return False
        return True

    async def _run(self) -> None:
        delay: float | None = None  # while uploads fail, the wait before the next try
        while True:
            if delay is None:
                await self._wake.wait()
            else:
                await asyncio.sleep(delay)  # files closed meanwhile are found by `pending`
            self._wake.clear()
            if await self.upload_pending():
                delay = None
            else:
                retry = self.destination
                delay = retry.retry_min if delay is None else min(delay * 2, retry.retry_max)

    async def _upload(self, path: Path) -> None:
        key = self.destination.key(path)
        if key is None:
            return
        body = await asyncio.to_thread(path.read_bytes)
        async with asyncio.timeout(self.destination.timeout):
            await self._client.put_object(Key=key, Body=body, **self._arguments)
        await asyncio.to_thread(path.unlink)
        logger.debug("recording uploaded", extra={"key": key, "bytes": len(body)})
