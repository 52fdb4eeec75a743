"""The payloads SageMaker's inference contract carries for tabular models.

`text/csv`: no header, one row per line, comma-separated values (an empty value is missing);
the answer is one score per line. `application/json`: SageMaker's common inference format,
`{"instances": [{"features": [...]}, ...]}` in and `{"predictions": [{"score": s}, ...]}` out.
The bidder's SageMaker scorer and `bidder model-server` share this module, so the two ends of
the wire cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import msgspec
import numpy as np
import numpy.typing as npt

CSV: Final = "text/csv"
JSON: Final = "application/json"
CONTENT_TYPES: Final = (CSV, JSON)


class PayloadError(ValueError):
    """A payload that does not follow the contract; the message says where."""


class Instance(msgspec.Struct, frozen=True):
    features: list[float | None]


class InstancesRequest(msgspec.Struct, frozen=True):
    instances: list[Instance]


class Prediction(msgspec.Struct, frozen=True):
    score: float


class PredictionsResponse(msgspec.Struct, frozen=True):
    predictions: list[Prediction]


_REQUEST_DECODER: Final = msgspec.json.Decoder(InstancesRequest)
_RESPONSE_DECODER: Final = msgspec.json.Decoder(PredictionsResponse)
_ENCODER: Final = msgspec.json.Encoder()


def media_type(header: str | bytes | None) -> str:
    """`text/csv; charset=utf-8` → `text/csv`."""
    if header is None:
        return ""
    text = header.decode("latin-1") if isinstance(header, bytes) else header
    return text.split(";", 1)[0].strip().lower()


def encode_rows(rows: npt.NDArray[np.float32], content_type: str) -> bytes:
    if content_type == JSON:
        instances = [Instance([None if math.isnan(v) else v for v in row]) for row in rows.tolist()]
        return _ENCODER.encode(InstancesRequest(instances))
    return "\n".join(
        ",".join("" if math.isnan(value) else repr(value) for value in row) for row in rows.tolist()
    ).encode()


def decode_rows(body: bytes, content_type: str, width: int) -> npt.NDArray[np.float32]:
    """Rows of exactly `width` values; missing values become NaN."""
    if content_type == JSON:
        try:
            request = _REQUEST_DECODER.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise PayloadError(f"invalid JSON payload: {exc}") from None
        rows = [
            [math.nan if value is None else value for value in instance.features]
            for instance in request.instances
        ]
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError("CSV payload is not UTF-8") from None
        rows = [_csv_row(line, number) for number, line in enumerate(text.splitlines(), 1) if line]
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise PayloadError(f"row {number}: {len(row)} values, the model takes {width}")
    if not rows:
        raise PayloadError("no rows in the payload")
    return np.asarray(rows, dtype=np.float32)


def _csv_row(line: str, number: int) -> list[float]:
    try:
        return [float(field) if field.strip() else math.nan for field in line.split(",")]
    except ValueError:
        raise PayloadError(f"row {number}: not a row of numbers") from None


def encode_scores(scores: Sequence[float], accept: str) -> bytes:
    if accept == JSON:
        return _ENCODER.encode(PredictionsResponse([Prediction(float(s)) for s in scores]))
    return "".join(f"{float(score)!r}\n" for score in scores).encode()


def decode_scores(body: bytes, content_type: str) -> list[float]:
    if content_type == JSON:
        try:
            return [p.score for p in _RESPONSE_DECODER.decode(body).predictions]
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise PayloadError(f"invalid JSON predictions: {exc}") from None
    try:
        # Older containers separate scores with commas, newer ones with newlines.
        return [float(field) for field in body.decode().replace(",", "\n").split()]
    except (UnicodeDecodeError, ValueError):
        raise PayloadError("CSV predictions are not numbers") from None
