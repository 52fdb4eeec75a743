"""The one settings object. Every knob of the bidder is here, with its default.

Values come from, highest priority first: `BIDDER_*` environment variables, then the TOML
file named by `BIDDER_CONFIG_FILE` (keys are the field names, without the prefix), then the
defaults below. They are validated when the bidder starts; a bad value stops it with a
message naming the setting.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bidder.errors import ConfigurationError

DEFAULTS_DIR = Path(__file__).resolve().parent / "defaults"
DEFAULT_MODEL_PATH = DEFAULTS_DIR / "model"
DEFAULT_CREATIVES_PATH = DEFAULTS_DIR / "creatives.json"
ENV_PREFIX = "BIDDER_"
CONFIG_FILE_VARIABLE = "BIDDER_CONFIG_FILE"

# A short HMAC key can be guessed from one known identifier and its hash; with the key, the
# hash of every IP address can be computed and the recorded ones reversed.
MIN_HASH_KEY_CHARS = 16

Bytes = Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True
    )

    # --- serving ---
    host: str = Field("127.0.0.1", description="Address the bid server listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port of the bid server.")
    workers: int = Field(1, ge=1, le=256, description="Worker processes.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Level of the JSON log lines written to stderr."
    )
    log_error_samples: int = Field(
        5,
        ge=1,
        le=10_000,
        description="Most log lines per kind of bid-path error in each log_error_interval_seconds.",
    )
    log_error_interval_seconds: int = Field(
        10, ge=1, le=3600, description="Window of log_error_samples; the rest are only counted."
    )
    shutdown_grace_seconds: int = Field(
        25, ge=1, le=29, description="Time in-flight requests get to finish on SIGTERM."
    )
    keepalive_timeout_seconds: int = Field(
        5, ge=1, le=3600, description="Idle time after which a connection is closed."
    )
    # libuv accepts one connection per listening socket per turn of the event loop: under
    # overload, a turn lasts milliseconds (`bidder.server.listening`).
    listen_sockets: int = Field(
        64,
        ge=1,
        le=1024,
        description="Listening sockets on the port (SO_REUSEPORT), each accepting per turn.",
    )
    # A burst of new connections (an exchange's pool growing while the bidder sheds) must
    # wait in the accept queue, not overflow it: a dropped handshake is retried by the
    # client's kernel after 1 s, then 3 s, long past any auction.
    listen_backlog: int = Field(
        4096,
        ge=1,
        le=65535,
        description="Connections the kernel queues for accepting (capped by net.core.somaxconn).",
    )
    admin_token: SecretStr | None = Field(
        None, description="Bearer token of the admin endpoints; unset: they do not exist."
    )
    metrics_dir: Path | None = Field(
        None, description="Shared Prometheus directory of several workers; default: a temp dir."
    )

    # --- telemetry: a separate metrics port and CloudWatch EMF ---
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port of a /metrics listener apart from bid traffic; default: the bid port.",
    )
    emf_sink: str = Field(
        "off",
        pattern=r"^(off|stdout|tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5})$",
        description="Where CloudWatch EMF documents go: off, stdout or tcp://host:port (agent).",
    )
    emf_interval_seconds: int = Field(
        60, ge=1, le=3600, description="Interval over which EMF metrics are aggregated."
    )
    emf_namespace: str = Field(
        "Bidder",
        min_length=1,
        max_length=255,
        pattern=r"^[ -~]+$",
        description="CloudWatch namespace of the EMF metrics.",
    )
    emf_service: str = Field(
        "bidder", min_length=1, max_length=1024, description="Value of the Service dimension."
    )
    emf_max_queued_documents: int = Field(
        100, ge=1, le=100_000, description="EMF documents waiting for the sink; more are dropped."
    )
    emf_tcp_timeout_ms: int = Field(
        1000, ge=1, le=60_000, description="Limit of one connect-and-write to the EMF TCP sink."
    )

    # --- the traffic recorder ---
    record_dir: Path | None = Field(
        None, description="Directory of recorded traffic (and spool of uploads); unset: off."
    )
    record_sample_rate: float = Field(
        0.01, ge=0.0, le=1.0, description="Share of bid requests recorded, 0 to 1."
    )
    record_sample_by_id: bool = Field(
        False, description="Sample by a hash of the request id instead of at random."
    )
    record_queue_size: int = Field(
        10_000, ge=1, le=1_000_000, description="Records waiting to be written; more are dropped."
    )
    record_queue_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024 * 1024,
        le=16 * 1024 * 1024 * 1024,
        description="Bytes of records waiting to be written; more are dropped.",
    )
    record_max_file_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="Bytes of records (before compression) at which a recording file is closed.",
    )
    record_max_file_seconds: float = Field(
        300.0, gt=0.0, le=86_400.0, description="Age at which a recording file is closed."
    )
    record_flush_seconds: float = Field(
        1.0,
        ge=0.01,
        le=3600.0,
        description="Longest time records stay unflushed (what a crash may lose).",
    )
    record_drain_seconds: float = Field(
        0.2,
        ge=0.001,
        le=10.0,
        description="How often queued records are written out (a crash loses them too).",
    )
    record_writer_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Niceness of the writer thread (Linux): the event loop runs first.",
    )
    record_user_ids: Literal["keep", "hash", "drop"] = Field(
        "drop", description="User identifiers and IP addresses in recordings: keep, hash, drop."
    )
    record_hash_key: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of record_user_ids=hash, 16 characters or more."
    )
    record_s3_bucket: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="S3 bucket closed recordings are uploaded to; unset: they stay local.",
    )
    record_s3_prefix: str = Field(
        "recordings", max_length=512, description="Key prefix of uploaded recordings."
    )
    record_s3_kms_key_id: str | None = Field(
        None, description="KMS key of the uploads' SSE-KMS encryption; unset: the bucket's."
    )
    record_s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint of the uploads (an S3-compatible server); default: AWS's."
    )
    record_s3_timeout_seconds: float = Field(
        30.0, gt=0.0, le=600.0, description="Longest time of one upload."
    )
    record_s3_retry_min_seconds: float = Field(
        1.0, ge=0.01, le=3600.0, description="First wait before retrying failed uploads."
    )
    record_s3_retry_max_seconds: float = Field(
        60.0, ge=0.01, le=3600.0, description="Longest wait between retries of failed uploads."
    )
    record_close_seconds: float = Field(
        5.0,
        gt=0.0,
        le=29.0,
        description="On shutdown, time to write queued records and finish uploads.",
    )

    # --- the model ---
    scorer: Literal["embedded", "sagemaker"] = Field(
        "embedded", description="Where rows are scored: in process, or a SageMaker endpoint."
    )
    model_path: Path = Field(
        DEFAULT_MODEL_PATH, description="model.tar.gz, model directory or model file."
    )
    model_s3_uri: str | None = Field(
        None,
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$",
        description="s3://bucket/key of a model.tar.gz, used instead of model_path.",
    )
    model_s3_version_id: str | None = Field(
        None, description="Version of model_s3_uri to load; default: the newest, at each load."
    )
    model_s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint for models (an S3-compatible server); default: AWS's."
    )
    model_cache_dir: Path | None = Field(
        None, description="Where models fetched from S3 are kept; default: a temp directory."
    )
    compile_cache_dir: Path | None = Field(
        None,
        description="Where compiled trees are kept; default: a directory in the temp dir.",
    )
    compile_model: bool = Field(
        True, description="Compile the trees with tl2cgen for batches, when it is installed."
    )
    feature_spec_path: Path | None = Field(
        None, description="Feature spec; default: feature_spec.json beside the model."
    )

    # --- the SageMaker scorer ---
    sagemaker_endpoint_name: str | None = Field(None, description="Endpoint to invoke.")
    sagemaker_region: str | None = Field(
        None, description="AWS region; default from the AWS chain (AWS_REGION, profile)."
    )
    sagemaker_endpoint_url: str | None = Field(
        None, description="Runtime URL, e.g. a VPC interface endpoint's; default: the region's."
    )
    sagemaker_content_type: Literal["text/csv", "application/json"] = Field(
        "text/csv", description="Payload format of invocations."
    )
    sagemaker_connect_timeout_ms: int = Field(50, ge=1, le=60_000, description="Connect timeout.")
    sagemaker_read_timeout_ms: int = Field(50, ge=1, le=60_000, description="Read timeout.")
    sagemaker_timeout_ms: int = Field(
        80, ge=1, le=60_000, description="Overall limit of one invocation, pool wait included."
    )
    sagemaker_max_pool_connections: int = Field(
        64, ge=1, le=10_000, description="Pooled connections to the endpoint."
    )
    sagemaker_target_variant: str | None = Field(None, description="TargetVariant to invoke.")
    sagemaker_target_model: str | None = Field(None, description="TargetModel (multi-model).")
    sagemaker_custom_attributes: str | None = Field(None, description="CustomAttributes sent.")
    sagemaker_inference_ids: bool = Field(
        False, description="Send a unique InferenceId with every invocation."
    )
    sagemaker_client: Literal["aiobotocore", "aiohttp"] = Field(
        "aiohttp",
        description="HTTP client of invocations: aiohttp (lean, SigV4 by botocore) or aiobotocore.",
    )
    breaker_failure_threshold: int = Field(
        5, ge=1, le=10_000, description="Consecutive failures that open the circuit breaker."
    )
    breaker_probe_interval_ms: int = Field(
        1000, ge=1, le=600_000, description="Time the breaker stays open before a probe."
    )

    # --- deadlines ---
    deadline_network_allowance_ms: float = Field(
        20.0, ge=0.0, le=10_000.0, description="Part of tmax kept for the network and exchange."
    )
    deadline_ceiling_ms: float = Field(
        100.0, gt=0.0, le=10_000.0, description="Longest budget, whatever tmax says."
    )
    deadline_default_ms: float = Field(
        80.0, gt=0.0, le=10_000.0, description="Budget of a request without tmax."
    )
    deadline_min_model_ms: float = Field(
        0.5, ge=0.0, le=10_000.0, description="Least remaining budget worth a model call."
    )

    # --- admission control ---
    admission_max_queue_ms: float = Field(
        20.0,
        gt=0.0,
        le=10_000.0,
        description="Longest expected wait of an admitted request; past it, requests are shed.",
    )
    admission_min_concurrency: int = Field(
        64, ge=1, le=100_000, description="Requests in flight below which none is shed."
    )
    admission_max_loop_lag_ms: float = Field(
        5.0,
        gt=0.0,
        le=10_000.0,
        description="Event loop lag past which every new bid request is shed until it is on time.",
    )

    # --- micro-batching ---
    batch_max_rows: int = Field(
        64, ge=1, le=4096, description="Most rows per model call; 1 scores each request alone."
    )
    batch_max_wait_ms: float = Field(
        2.0, ge=0.0, le=1000.0, description="Longest wait of queued rows while calls are out."
    )
    batch_max_in_flight: int = Field(
        4, ge=1, le=1024, description="Concurrent model calls of a remote scorer."
    )

    # --- limits on requests ---
    max_body_bytes: Bytes = Field(256 * 1024, description="Largest request body accepted.")
    max_decompressed_bytes: Bytes = Field(
        256 * 1024, description="Largest body after gzip decompression."
    )
    max_imps: int = Field(100, ge=1, le=10_000, description="Most impressions per request.")
    # Above ~900 levels the interpreter's recursion limit would refuse first, hence the bound.
    max_json_depth: int = Field(
        64, ge=8, le=512, description="Deepest nesting of arrays and objects in a request."
    )
    max_header_bytes: int = Field(
        16 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Largest request line plus headers; larger gets 431 and the connection closed.",
    )
    request_read_timeout_ms: int = Field(
        1000,
        ge=10,
        le=60_000,
        description="Longest time from a request's first byte to its last (slower gets 408).",
    )

    # --- the decision ---
    bid_threshold: float = Field(0.05, ge=0.0, le=1.0, description="Lowest score that is bid on.")
    price_intercept: float = Field(0.0, description="CPM price at score 0.")
    price_slope: float = Field(40.0, ge=0.0, description="CPM price added per unit of score.")
    max_price: float = Field(20.0, gt=0.0, description="Highest CPM price ever bid.")
    currency: str = Field(
        "USD", pattern=r"^[A-Z]{3}$", description="ISO-4217 currency of all bids."
    )
    seat: str | None = Field(None, description="seatbid.seat in responses.")
    creatives_path: Path = Field(
        DEFAULT_CREATIVES_PATH, description="JSON catalogue of the creatives offered."
    )
    openrtb_version: Literal["2.5", "2.6"] = Field(
        "2.6", description="Version answered when a request names none."
    )

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.max_decompressed_bytes < self.max_body_bytes:
            raise ValueError("max_decompressed_bytes must be at least max_body_bytes")
        if self.scorer == "sagemaker" and not self.sagemaker_endpoint_name:
            raise ValueError("scorer sagemaker needs BIDDER_SAGEMAKER_ENDPOINT_NAME")
        if self.emf_sink.startswith("tcp://") and int(self.emf_sink.rsplit(":", 1)[1]) > 65535:
            raise ValueError("BIDDER_EMF_SINK: the port must be at most 65535")
        self._check_recording()
        return self

    def _check_recording(self) -> None:
        if self.record_queue_bytes < 2 * self.max_decompressed_bytes:
            raise ValueError(
                "BIDDER_RECORD_QUEUE_BYTES: must be at least twice max_decompressed_bytes, "
                "so that the record of any body accepted fits"
            )
        if self.record_user_ids == "hash" and self.record_hash_key is None:
            raise ValueError("BIDDER_RECORD_USER_IDS=hash needs BIDDER_RECORD_HASH_KEY")
        key = self.record_hash_key
        if key is not None and len(key.get_secret_value()) < MIN_HASH_KEY_CHARS:
            raise ValueError(
                f"BIDDER_RECORD_HASH_KEY: shorter than {MIN_HASH_KEY_CHARS} characters"
            )
        if self.record_s3_bucket is not None and self.record_dir is None:
            raise ValueError("BIDDER_RECORD_S3_BUCKET needs BIDDER_RECORD_DIR (the upload spool)")
        if self.record_s3_retry_max_seconds < self.record_s3_retry_min_seconds:
            raise ValueError(
                "BIDDER_RECORD_S3_RETRY_MAX_SECONDS must be at least "
                "BIDDER_RECORD_S3_RETRY_MIN_SECONDS"
            )

    @property
    def compiled_trees_dir(self) -> Path | None:
        """Where compiled trees are kept, or None when the model is not to be compiled."""
        if not self.compile_model:
            return None
        return self.compile_cache_dir or Path(tempfile.gettempdir()) / "bidder-models"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _TomlFileSource(settings_cls)


class _TomlFileSource(PydanticBaseSettingsSource):
    """The TOML file named by `BIDDER_CONFIG_FILE`, read at each load (workers re-read it)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = os.environ.get(CONFIG_FILE_VARIABLE)
        self._values: dict[str, Any] = {}
        if path:
            try:
                with open(path, "rb") as handle:
                    self._values = tomllib.load(handle)
            except OSError as exc:
                raise ConfigurationError(f"{CONFIG_FILE_VARIABLE}={path}: {exc.strerror}") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigurationError(f"{CONFIG_FILE_VARIABLE}={path}: {exc}") from None

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and config file, or a `ConfigurationError` listing every
    bad value by its environment variable name."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            name = f"{ENV_PREFIX}{field.upper()}" if field != "settings" else field
            problems.append(f"  {name}: {error['msg']}")
        raise ConfigurationError("invalid settings:\n" + "\n".join(problems)) from None
