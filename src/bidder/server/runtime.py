"""Everything the bid path needs, built once at start-up from the settings.

Loading, checking and warming up happen here, before the server reports ready, so that no
request ever pays for them and a model that cannot serve is refused before it takes traffic.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bidder.decision import BidPolicy, CreativeCatalog, LinearPricing
from bidder.errors import FeatureSpecError, ModelLoadError
from bidder.features import FeatureSpec, Vectorizer
from bidder.openrtb import Banner, BidRequest, Device, Geo, Imp, Site
from bidder.scoring import EmbeddedScorer, Scorer, load_model_artifact
from bidder.scoring.artifacts import MAX_ARTIFACT_BYTES, bundled_feature_spec
from bidder.scoring.batcher import MicroBatcher
from bidder.scoring.breaker import BreakerState, CircuitBreaker
from bidder.scoring.model_store import fetch_model
from bidder.scoring.sagemaker import SageMakerEndpoint, SageMakerScorer
from bidder.settings import Settings
from bidder.telemetry import Metrics

# A plausible request scored at start-up: it exercises every stage before real traffic does.
WARM_UP_REQUEST = BidRequest(
    id="warm-up",
    imp=[Imp(id="1", banner=Banner(w=300, h=250), bidfloor=0.1)],
    site=Site(domain="warm-up.example"),
    device=Device(devicetype=2, os="android", geo=Geo(country="USA", utcoffset=0)),
    tmax=100,
)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    spec: FeatureSpec
    vectorizer: Vectorizer
    scorer: MicroBatcher
    policy: BidPolicy

    @classmethod
    async def start(cls, settings: Settings, metrics: Metrics) -> Runtime:
        """Load and check everything, and open the scorer's connections."""
        settings = await _fetch_model(settings)
        # Parsing and compiling a model take from milliseconds to seconds: off the event
        # loop, so that a reload beside a serving model does not delay its requests.
        scorer: Scorer
        if settings.scorer == "embedded":
            artifact = await asyncio.to_thread(load_model_artifact, settings.model_path)
            spec = _feature_spec(settings, artifact.feature_spec)
            spec.check_model_width(artifact.num_features)
            scorer = await asyncio.to_thread(
                EmbeddedScorer, artifact, compile_cache=settings.compiled_trees_dir
            )
        else:
            bundled = await asyncio.to_thread(bundled_feature_spec, settings.model_path)
            spec = _feature_spec(settings, bundled)
            scorer = _sagemaker_scorer(settings, spec.width, metrics)
        policy = BidPolicy(
            threshold=settings.bid_threshold,
            pricing=LinearPricing(
                intercept=settings.price_intercept,
                slope=settings.price_slope,
                max_price=settings.max_price,
            ),
            currency=settings.currency,
            catalog=CreativeCatalog.load(settings.creatives_path),
            seat=settings.seat,
        )
        # Always a batcher, even of one row per call: it is also where deadlines are kept.
        batcher = MicroBatcher(
            scorer,
            max_batch_rows=settings.batch_max_rows,
            max_wait=settings.batch_max_wait_ms / 1000,
            # In-process scoring holds the event loop anyway: one batch at a time.
            max_in_flight=1 if settings.scorer == "embedded" else settings.batch_max_in_flight,
            metrics=metrics,
        )
        await batcher.start()
        return cls(settings, spec, Vectorizer(spec), batcher, policy)

    async def warm_up(self) -> None:
        """Score the warm-up request end to end; refuse a model that gives no usable score."""
        rows = self.vectorizer.matrix(WARM_UP_REQUEST, time.time())
        scores = await self.scorer.score(rows)
        if len(scores) != 1 or not math.isfinite(float(scores[0])):
            raise ModelLoadError(f"warm-up prediction gave {scores!r}, not one finite score")
        self.policy.decide(WARM_UP_REQUEST, scores)


async def _fetch_model(settings: Settings) -> Settings:
    """With `model_s3_uri`, the settings with `model_path` pointing at the fetched copy."""
    if settings.model_s3_uri is None:
        return settings
    fetched = await fetch_model(
        settings.model_s3_uri,
        version_id=settings.model_s3_version_id,
        cache_dir=settings.model_cache_dir or Path(tempfile.gettempdir()) / "bidder-model-store",
        max_bytes=MAX_ARTIFACT_BYTES,
        endpoint_url=settings.model_s3_endpoint_url,
    )
    return settings.model_copy(update={"model_path": fetched.path})


def _sagemaker_scorer(settings: Settings, width: int, metrics: Metrics) -> SageMakerScorer:
    assert settings.sagemaker_endpoint_name is not None  # checked by Settings

    def export_state(state: BreakerState) -> None:
        metrics.circuit_breaker_state.set(int(state))

    endpoint = SageMakerEndpoint(
        endpoint_name=settings.sagemaker_endpoint_name,
        region=settings.sagemaker_region,
        endpoint_url=settings.sagemaker_endpoint_url,
        content_type=settings.sagemaker_content_type,
        connect_timeout=settings.sagemaker_connect_timeout_ms / 1000,
        read_timeout=settings.sagemaker_read_timeout_ms / 1000,
        invoke_timeout=settings.sagemaker_timeout_ms / 1000,
        max_pool_connections=settings.sagemaker_max_pool_connections,
        target_variant=settings.sagemaker_target_variant,
        target_model=settings.sagemaker_target_model,
        custom_attributes=settings.sagemaker_custom_attributes,
        inference_ids=settings.sagemaker_inference_ids,
        client=settings.sagemaker_client,
    )
    breaker = CircuitBreaker(
        failure_threshold=settings.breaker_failure_threshold,
        probe_interval=settings.breaker_probe_interval_ms / 1000,
        on_change=export_state,
    )
    return SageMakerScorer(endpoint, num_features=width, breaker=breaker, metrics=metrics)


def _feature_spec(settings: Settings, bundled: bytes | None) -> FeatureSpec:
    if settings.feature_spec_path is not None:
        return FeatureSpec.load(settings.feature_spec_path)
    if bundled is None:
        raise FeatureSpecError(
            f"{settings.model_path} holds no feature_spec.json; "
            "set BIDDER_FEATURE_SPEC_PATH to the spec the model was trained with"
        )
    return FeatureSpec.from_json(bundled, origin=f"{settings.model_path}:feature_spec.json")
