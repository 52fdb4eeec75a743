"""The recorder's settings: off unless a directory is given, and inconsistent ones refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bidder.errors import ConfigurationError
from bidder.recording import create_recorder
from bidder.settings import load_settings
from bidder.telemetry import Metrics


def test_recording_is_off_without_a_directory() -> None:
    assert create_recorder(load_settings(), Metrics(CollectorRegistry())) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"record_user_ids": "hash"}, "BIDDER_RECORD_USER_IDS=hash needs BIDDER_RECORD_HASH_KEY"),
        (
            {"record_user_ids": "hash", "record_hash_key": "too short"},
            "BIDDER_RECORD_HASH_KEY: shorter than 16 characters",
        ),
        ({"record_s3_bucket": "recordings"}, "BIDDER_RECORD_S3_BUCKET needs BIDDER_RECORD_DIR"),
        ({"record_s3_bucket": "Not_A_Bucket"}, "BIDDER_RECORD_S3_BUCKET: String should match"),
        ({"record_sample_rate": 1.5}, "BIDDER_RECORD_SAMPLE_RATE: Input should be less than"),
        (
            {"record_s3_retry_min_seconds": 10, "record_s3_retry_max_seconds": 1},
            "BIDDER_RECORD_S3_RETRY_MAX_SECONDS must be at least",
        ),
        (
            {"record_queue_bytes": 2 * 1024 * 1024, "max_decompressed_bytes": 4 * 1024 * 1024},
            "BIDDER_RECORD_QUEUE_BYTES: must be at least twice max_decompressed_bytes",
        ),
        ({"record_queue_bytes": 1000}, "BIDDER_RECORD_QUEUE_BYTES: Input should be greater"),
        ({"record_drain_seconds": 0}, "BIDDER_RECORD_DRAIN_SECONDS: Input should be greater"),
        ({"record_writer_nice": 20}, "BIDDER_RECORD_WRITER_NICE: Input should be less than"),
    ],
)
def test_inconsistent_settings_are_refused_by_name(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(**overrides)


def test_the_environment_turns_recording_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIDDER_RECORD_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("BIDDER_RECORD_SAMPLE_RATE", "0.25")
    monkeypatch.setenv("BIDDER_RECORD_USER_IDS", "hash")
    monkeypatch.setenv("BIDDER_RECORD_HASH_KEY", "a-key-of-enough-length")
    recorder = create_recorder(load_settings(), Metrics(CollectorRegistry()))
    assert recorder is not None
    assert recorder.directory == tmp_path / "spool"
    assert recorder.sampled.rate == 0.25
    assert recorder.uploader is None
