"""The traffic recorder: sampling, the hand-off, the writer thread and the uploads, together.

The bid path asks `sampled` (unless `sampled.takes_all`) and, for a yes, calls `put` with
references to what it already holds, after the answer is sent; everything else happens in
the writer's thread (`writer.py`) or in the upload task (`upload.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from pathlib import Path
from typing import Final

from bidder.openrtb.model import BidRequest
from bidder.recording.record import RecordEncoder
from bidder.recording.redaction import Redactor
from bidder.recording.upload import S3Destination, S3Uploader
from bidder.recording.writer import CaptureQueue, RecordWriter, WriterPolicy
from bidder.settings import Settings
from bidder.telemetry import Metrics

_HASH_RANGE: Final = 1 << 64

logger = logging.getLogger("bidder.recording")


class Sampler:
    """Which requests are recorded: a share `rate` of them, drawn at random, or with
    `by_id` by a hash of the request id, so that every worker and every replica takes
    the same requests (a request with no id decoded is hashed by its body)."""

    def __init__(self, rate: float, *, by_id: bool) -> None:
        self.rate = rate
        self.by_id = by_id
        # Every request: the bid path then skips the call (half a microsecond, in place).
        self.takes_all = rate >= 1.0
        self._threshold = int(rate * _HASH_RANGE)

    def __call__(self, request: BidRequest | None, body: bytes) -> bool:
        if self.takes_all:
            return True
        if not self.by_id:
            return random.random() < self.rate
        key = request.id.encode() if request is not None and request.id else body
        digest = hashlib.blake2b(key, digest_size=8).digest()
        return int.from_bytes(digest) < self._threshold


class Recorder:
    """Records a sample of bid requests, with the answers they got, to gzip JSON Lines
    files in `directory`, and uploads the closed files to S3 when a destination is given.
    """

    def __init__(
        self,
        directory: Path,
        sampler: Sampler,
        queue_size: int,
        queue_bytes: int,
        policy: WriterPolicy,
        redactor: Redactor | None,
        metrics: Metrics,
        s3: S3Destination | None = None,
    ) -> None:
        self.directory = directory
        self.sampled = sampler
        self.queue = CaptureQueue(queue_size, queue_bytes)
        self.put = self.queue.put
        self.writer = RecordWriter(
            self.queue, directory, RecordEncoder(redactor), policy, metrics, self._closed
        )
        self.uploader = None if s3 is None else S3Uploader(s3, self.writer.closed_files)

    async def start(self) -> None:
        await asyncio.to_thread(self.writer.start)
        if self.uploader is not None:
            await self.uploader.start()

    async def close(self, grace: float) -> bool:
        """Writes every queued record, closes the open file and uploads what is left,
        within `grace` seconds; False if something was left undone (files not uploaded
        stay in the directory for the next start)."""
        deadline = time.monotonic() + grace
        written = await asyncio.to_thread(self.writer.stop, grace)
        if not written:
            logger.warning("the recorder's queue was not written out in time")
        if self.uploader is None:
            return written
        uploaded = await self.uploader.close(max(0.0, deadline - time.monotonic()))
        return written and uploaded

    def _closed(self, _: Path) -> None:
        if self.uploader is not None:
            self.uploader.notify()


def create_recorder(settings: Settings, metrics: Metrics) -> Recorder | None:
    """The recorder `settings` ask for, or None when `record_dir` is unset."""
    if settings.record_dir is None:
        return None
    redactor = None
    if settings.record_user_ids != "keep":
        key = settings.record_hash_key
        redactor = Redactor(
            settings.record_user_ids,
            key.get_secret_value().encode() if key is not None else None,
        )
    s3 = None
    if settings.record_s3_bucket is not None:
        s3 = S3Destination(
            bucket=settings.record_s3_bucket,
            prefix=settings.record_s3_prefix,
            kms_key_id=settings.record_s3_kms_key_id,
            endpoint_url=settings.record_s3_endpoint_url,
            timeout=settings.record_s3_timeout_seconds,
            retry_min=settings.record_s3_retry_min_seconds,
            retry_max=settings.record_s3_retry_max_seconds,
        )
    return Recorder(
        settings.record_dir,
        Sampler(settings.record_sample_rate, by_id=settings.record_sample_by_id),
        settings.record_queue_size,
        settings.record_queue_bytes,
        WriterPolicy(
            max_bytes=settings.record_max_file_bytes,
            max_seconds=settings.record_max_file_seconds,
            flush_seconds=settings.record_flush_seconds,
            drain_seconds=settings.record_drain_seconds,
            writer_nice=settings.record_writer_nice,
        ),
        redactor,
        metrics,
        s3,
    )
