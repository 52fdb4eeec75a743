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
import uuid
from pathlib import Path

import numpy as np
import xgboost
from fastapi import FastAPI, Response
from pydantic import BaseModel

from bidder.features import FEATURE_SPEC_FILENAME, FeatureSpec, Vectorizer
from bidder.openrtb import decode_bid_request
from bidder.settings import DEFAULT_MODEL_PATH

# The bidder's default decision settings, so that both bid on the same impressions.
BID_THRESHOLD = 0.05
PRICE_SLOPE = 40.0
MAX_PRICE = 20.0

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


class Format(BaseModel):
    w: int | None = None
    h: int | None = None


class Banner(BaseModel):
    w: int | None = None
    h: int | None = None
    format: list[Format] | None = None
    pos: int | None = None


class Video(BaseModel):
    mimes: list[str] | None = None
    w: int | None = None
    h: int | None = None


class Native(BaseModel):
    request: str


class Imp(BaseModel):
    id: str
    banner: Banner | None = None
    video: Video | None = None
    native: Native | None = None
    bidfloor: float = 0.0
    bidfloorcur: str = "USD"
    instl: int = 0


class Publisher(BaseModel):
    id: str | None = None


class Site(BaseModel):
    id: str | None = None
    domain: str | None = None
    page: str | None = None
    publisher: Publisher | None = None


class App(BaseModel):
    id: str | None = None
    bundle: str | None = None
    domain: str | None = None
    publisher: Publisher | None = None


class Geo(BaseModel):
    country: str | None = None
    region: str | None = None
    city: str | None = None
    utcoffset: int | None = None


class Device(BaseModel):
    devicetype: int | None = None
    make: str | None = None
    os: str | None = None
    connectiontype: int | None = None
    geo: Geo | None = None


class BidRequest(BaseModel):
    id: str
    imp: list[Imp]
    site: Site | None = None
    app: App | None = None
    device: Device | None = None
    tmax: int | None = None
    cur: list[str] | None = None


class Bid(BaseModel):
    id: str
    impid: str
    price: float
    crid: str


class SeatBid(BaseModel):
    bid: list[Bid]


class BidResponse(BaseModel):
    id: str
    seatbid: list[SeatBid]
    cur: str = "USD"


app = FastAPI()


@app.post("/openrtb2/bid", response_model=BidResponse)
def bid(request: BidRequest) -> BidResponse | Response:
    # The bidder's feature code reads its own request type: hand it the validated model.
    struct = decode_bid_request(request.model_dump_json(exclude_none=True).encode())
    rows = np.asarray(vectorizer.rows(struct, time.time()), dtype=np.float32)
    scores = booster.inplace_predict(rows)
    bids = []
    for imp, score in zip(request.imp, scores.tolist(), strict=True):
        price = min(MAX_PRICE, PRICE_SLOPE * score)
        if score >= BID_THRESHOLD and price >= imp.bidfloor:
            bids.append(Bid(id=uuid.uuid4().hex, impid=imp.id, price=price, crid="baseline"))
    if not bids:
        return Response(status_code=204)
    return BidResponse(id=request.id, seatbid=[SeatBid(bid=bids)])
