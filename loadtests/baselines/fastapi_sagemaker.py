"""The SageMaker baseline: the bid endpoint as the FastAPI documentation and the SageMaker
seed notebook would have it written against a real-time endpoint.

A pydantic body model of the bid request, a `response_model`, an async route, and one
aiobotocore `invoke_endpoint` per request carrying the request's feature rows as CSV (the
built-in XGBoost container's format). The client is created once, in the lifespan, as the
aiobotocore documentation shows; its pool is given as many connections as the benchmark
opens, so that the baseline is not starved by botocore's default of 10. Features come from
the same code (`bidder.features`) and spec as the bidder's, so the two differ only in how
they serve and call the endpoint.

    BASELINE_ENDPOINT_URL=http://127.0.0.1:8080 \\
        uvicorn loadtests.baselines.fastapi_sagemaker:app --http httptools --loop uvloop

`BASELINE_ENDPOINT_URL` is the SageMaker Runtime URL (in the benchmark, a `bidder
model-server` on loopback), `BASELINE_ENDPOINT_NAME` the endpoint (default `bench`), and
`BASELINE_FEATURE_SPEC` the feature spec (default the bidder's packaged model's).
Credentials and region come from the standard AWS chain.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from fastapi import FastAPI, Response

from bidder.features import FEATURE_SPEC_FILENAME, FeatureSpec, Vectorizer
from bidder.openrtb import decode_bid_request
from bidder.settings import DEFAULT_MODEL_PATH
from loadtests.baselines.openrtb_pydantic import BidRequest, BidResponse, bid_response

ENDPOINT_URL = os.environ.get("BASELINE_ENDPOINT_URL")
ENDPOINT_NAME = os.environ.get("BASELINE_ENDPOINT_NAME", "bench")
SPEC_FILE = Path(
    os.environ.get("BASELINE_FEATURE_SPEC", DEFAULT_MODEL_PATH / FEATURE_SPEC_FILENAME)
)
# As many pooled connections as the benchmark's closed loop opens.
POOL_CONNECTIONS = 64

vectorizer = Vectorizer(FeatureSpec.load(SPEC_FILE))
runtime: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    config = AioConfig(max_pool_connections=POOL_CONNECTIONS)
    async with get_session().create_client(
        "sagemaker-runtime", endpoint_url=ENDPOINT_URL, config=config
    ) as client:
        runtime["client"] = client
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/openrtb2/bid", response_model=BidResponse)
async def bid(request: BidRequest) -> BidResponse | Response:
    # The bidder's feature code reads its own request type: hand it the validated model.
    struct = decode_bid_request(request.model_dump_json(exclude_none=True).encode())
    rows = vectorizer.rows(struct, time.time())
    # NaN is written as `nan`, which the endpoint's CSV parser reads as a missing value.
    body = "\n".join(",".join(str(value) for value in row) for row in rows)
    response = await runtime["client"].invoke_endpoint(
        EndpointName=ENDPOINT_NAME, ContentType="text/csv", Body=body.encode()
    )
    answer = await response["Body"].read()
    scores = [float(score) for score in answer.decode().replace(",", "\n").split()]
    return bid_response(request, scores)
