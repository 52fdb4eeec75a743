"""Turning bid requests into model input rows: one row per impression.

The spec is compiled once into a list of column functions, so building a row is a handful
of attribute reads and dictionary look-ups. Training (`bidder.training`) and serving call
the same `Vectorizer`, which is what keeps the two from drifting apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from bidder.features.hashing import stable_hash
from bidder.features.sources import SOURCES, RequestContext, Value
from bidder.features.spec import (
    Encoding,
    FeatureSpec,
    HashEncoding,
    NumericEncoding,
    VocabularyEncoding,
)
from bidder.openrtb.model import BidRequest, Imp

NAN = math.nan

Rows = npt.NDArray[np.float32]
Encoder = Callable[[Value], float]


def _encode_numeric(value: Value) -> float:
    if value is None:
        return NAN
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return NAN
    else:
        number = float(value)
    return number if math.isfinite(number) else NAN


def _hash_encoder(buckets: int) -> Encoder:
    def encode(value: Value) -> float:
        if value is None:
            return NAN
        return float(stable_hash(value if isinstance(value, str) else str(value), buckets))

    return encode


def _vocabulary_encoder(values: Sequence[str], unknown: float) -> Encoder:
    index = {value: float(position) for position, value in enumerate(values)}

    def encode(value: Value) -> float:
        if value is None:
            return NAN
        return index.get(value if isinstance(value, str) else str(value), unknown)

    return encode


def _encoder(encoding: Encoding) -> Encoder:
    if isinstance(encoding, HashEncoding):
        return _hash_encoder(encoding.buckets)
    if isinstance(encoding, VocabularyEncoding):
        return _vocabulary_encoder(encoding.values, encoding.unknown)
    assert isinstance(encoding, NumericEncoding)
    return _encode_numeric


class Vectorizer:
    """Builds the model's input rows for a request, one per impression, in `imp` order."""

    def __init__(self, spec: FeatureSpec) -> None:
        spec.check()
        self.spec = spec
        self._template: list[float] = [NAN] * spec.width
        self._request_columns: list[tuple[int, Callable[[RequestContext], Value], Encoder]] = []
        self._imp_columns: list[tuple[int, Callable[[Imp], Value], Encoder]] = []
        for column, feature in enumerate(spec.features):
            source = SOURCES[feature.source]
            if source.scope == "constant":
                assert feature.value is not None
                self._template[column] = feature.value
            elif source.scope == "request":
                self._request_columns.append((column, source.extract, _encoder(feature.encoding)))
            else:
                self._imp_columns.append((column, source.extract, _encoder(feature.encoding)))

    @property
    def width(self) -> int:
        return self.spec.width

    def rows(self, request: BidRequest, now: float) -> list[list[float]]:
        """The rows of one request, `now` being its arrival time in seconds since the epoch."""
        context = RequestContext.at(request, now)
        shared = self._template.copy()
        for column, extract, encode in self._request_columns:
            shared[column] = encode(extract(context))
        rows = []
        for imp in request.imp or ():
            row = shared.copy()
            for column, extract_imp, encode in self._imp_columns:
                row[column] = encode(extract_imp(imp))
            rows.append(row)
        return rows

    def matrix(self, request: BidRequest, now: float) -> Rows:
        return np.asarray(self.rows(request, now), dtype=np.float32).reshape(-1, self.width)
