"""The baseline: the bid endpoint as the FastAPI documentation and the SageMaker seed
notebook would have it written.

A pydantic body model of the bid request, a `response_model`, a synchronous route (which
FastAPI runs in its thread pool) and one in-process XGBoost `Booster.inplace_predict` per
request. It scores with the same model and the same feature code (`bidder.features`) as
the bidder, so the two differ only in how they serve.

    BASELINE_MODEL=path/to/xgboost-model.json \\
        uvicorn loadtests.baselines.fastapi_embedded:app --http httptools --loop uvloop

`BASELINE_MODEL` is an XGBoost JSON model (default: the bidder's packaged default model);
its feature spec is `feature_spec.json` beside it unless `BASELINE_FEATURE_SPEC` names one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import xgboost
from fastapi import FastAPI, Response

from bidder.features import FEATURE_SPEC_FILENAME, FeatureSpec, Vectorizer
from bidder.openrtb import decode_bid_request
from bidder.settings import DEFAULT_MODEL_PATH
from loadtests.baselines.openrtb_pydantic import BidRequest, BidResponse, bid_response

MODEL_FILE = Path(os.environ.get("BASELINE_MODEL", DEFAULT_MODEL_PATH / "xgboost-model.json"))
SPEC_FILE = Path(os.environ.get("BASELINE_FEATURE_SPEC", MODEL_FILE.parent / FEATURE_SPEC_FILENAME))

booster = xgboost.Booster(model_file=str(MODEL_FILE))
booster.set_param({"nthread": 1})
vectorizer = Vectorizer(FeatureSpec.load(SPEC_FILE))
if vectorizer.width != booster.num_features():
    raise SystemExit(
        f"{SPEC_FILE} has {vectorizer.width} features, {MODEL_FILE} expects "
        f"{booster.num_features()}"
    )

app = FastAPI()


@app.post("/openrtb2/bid", response_model=BidResponse)
def bid(request: BidRequest) -> BidResponse | Response:
    # The bidder's feature code reads its own request type: hand it the validated model.
    struct = decode_bid_request(request.model_dump_json(exclude_none=True).encode())
    rows = np.asarray(vectorizer.rows(struct, time.time()), dtype=np.float32)
    return bid_response(request, booster.inplace_predict(rows).tolist())
