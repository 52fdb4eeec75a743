"""The baseline: the bid endpoint as the FastAPI tutorial and the SageMaker seed notebook
would have it written.

A pydantic body model of the bid request, a `response_model`, and one in-process XGBoost
`Booster.inplace_predict` per request on the same features and the same model the bidder
serves (`BASELINE_MODEL`, default: the bidder's default model).

    uvicorn loadtests.baselines.fastapi_embedded:app --http httptools --loop uvloop
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

from bidder.features import FeatureSpec, Vectorizer
from bidder.openrtb import BidRequest as BidRequestStruct
from bidder.openrtb import decode_bid_request
from bidder.settings import DEFAULT_MODEL_PATH

MODEL_DIR = Path(os.environ.get("BASELINE_MODEL", str(DEFAULT_MODEL_PATH)))
booster = xgboost.Booster(model_file=str(MODEL_DIR / "xgboost-model.json"))
booster.set_param({"nthread": 1})
vectorizer = Vectorizer(FeatureSpec.load(MODEL_DIR / "feature_spec.json"))


class Format(BaseModel):
    w: int | None = None
    h: int | None = None


class Banner(BaseModel):
    w: int | None = None
    h: int | None = None
    format: list[Format] | None = None
    pos: int | None = None


class Video(BaseModel):
    mimes: list[str]
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
    domain: str | None = None
    publisher: Publisher | None = None


class App(BaseModel):
    bundle: str | None = None
    publisher: Publisher | None = None


class Geo(BaseModel):
    country: str | None = None
    region: str | None = None
    city: str | None = None
    utcoffset: int | None = None


class Device(BaseModel):
    devicetype: int | None = None
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
    # The same feature code as the bidder, fed from the pydantic model.
    struct: BidRequestStruct = decode_bid_request(
        request.model_dump_json(exclude_none=True).encode()
    )
    bids = []
    for imp, row in zip(request.imp, vectorizer.rows(struct, time.time()), strict=True):
        score = float(booster.inplace_predict(np.asarray([row], dtype=np.float32))[0])
        if score >= 0.05:
            price = min(20.0, 40.0 * score)
            if price >= imp.bidfloor:
                bids.append(Bid(id=uuid.uuid4().hex, impid=imp.id, price=price, crid="baseline"))
    if not bids:
        return Response(status_code=204)
    return BidResponse(id=request.id, seatbid=[SeatBid(bid=bids)])


@app.get("/readyz")
def ready() -> dict[str, str]:
    return {"status": "ready"}
