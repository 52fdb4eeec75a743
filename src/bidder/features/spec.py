"""The feature spec: a versioned JSON document, shipped beside the model, that says which
request fields become which column of the model's input, and how.

    {
      "name": "default",
      "version": "3",
      "features": [
        {"name": "hour", "source": "hour_of_day"},
        {"name": "os", "source": "os", "encoding": {"kind": "hash", "buckets": 64}},
        {"name": "country", "source": "country",
         "encoding": {"kind": "vocabulary", "values": ["USA", "GBR"], "unknown": -1}},
        {"name": "advertiser", "source": "constant", "value": 3}
      ]
    }

`source` names one of the extractors in `bidder.features.sources`; `encoding` turns what it
extracts into a float: `numeric` (the default: numbers as they are, numeric strings parsed),
`hash` (a stable CRC-32 of the string, modulo `buckets`) or `vocabulary` (the index in
`values`, or `unknown`). Anything missing becomes NaN, which tree models route explicitly.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from bidder.errors import FeatureSpecError
from bidder.features.sources import SOURCES

FEATURE_SPEC_FILENAME = "feature_spec.json"


class NumericEncoding(
    msgspec.Struct, tag="numeric", tag_field="kind", forbid_unknown_fields=True, frozen=True
):
    pass


class HashEncoding(
    msgspec.Struct, tag="hash", tag_field="kind", forbid_unknown_fields=True, frozen=True
):
    buckets: Annotated[int, msgspec.Meta(ge=1, le=2**24)]


class VocabularyEncoding(
    msgspec.Struct, tag="vocabulary", tag_field="kind", forbid_unknown_fields=True, frozen=True
):
    values: list[str]
    unknown: float = math.nan


Encoding = NumericEncoding | HashEncoding | VocabularyEncoding


class Feature(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    name: str
    source: str
    encoding: Encoding = NumericEncoding()
    # Only for `source: constant`: the value every row gets in this column.
    value: float | None = None


class FeatureSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    name: str
    version: str
    features: list[Feature]
    format: Literal["bidder-feature-spec/1"] = "bidder-feature-spec/1"
    description: str = ""

    @property
    def width(self) -> int:
        return len(self.features)

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def from_json(cls, data: bytes, *, origin: str = "feature spec") -> FeatureSpec:
        try:
            spec = msgspec.json.decode(data, type=cls)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise FeatureSpecError(f"{origin}: {exc}") from None
        spec.check()
        return spec

    @classmethod
    def load(cls, path: str | Path) -> FeatureSpec:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FeatureSpecError(f"cannot read feature spec {path}: {exc.strerror}") from None
        return cls.from_json(data, origin=str(path))

    def to_json(self) -> bytes:
        return msgspec.json.format(msgspec.json.encode(self), indent=2) + b"\n"

    def check(self) -> None:
        """Refuse specs that could only fail later, on live traffic."""
        if not self.features:
            raise FeatureSpecError(f"{self.id}: no features")
        names: set[str] = set()
        for index, feature in enumerate(self.features):
            where = f"{self.id}: features[{index}] ({feature.name!r})"
            if feature.name in names:
                raise FeatureSpecError(f"{where}: duplicate feature name")
            names.add(feature.name)
            if feature.source not in SOURCES:
                known = ", ".join(sorted(SOURCES))
                raise FeatureSpecError(f"{where}: unknown source {feature.source!r} ({known})")
            if (feature.source == "constant") != (feature.value is not None):
                raise FeatureSpecError(f"{where}: `value` goes with source `constant` only")

    def check_model_width(self, model_width: int) -> None:
        if model_width != self.width:
            raise FeatureSpecError(
                f"feature spec {self.id} builds {self.width} features, "
                f"the model expects {model_width}"
            )
