"""Feature specs and the vectorizer: one row per impression, stable across processes."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from bidder.errors import FeatureSpecError
from bidder.features import FeatureSpec, Vectorizer, stable_hash
from bidder.openrtb import decode_bid_request

SPEC = FeatureSpec.from_json(
    msgspec.json.encode(
        {
            "name": "test",
            "version": "2",
            "features": [
                {"name": "hour", "source": "hour_of_day"},
                {"name": "dow", "source": "day_of_week"},
                {"name": "os", "source": "os", "encoding": {"kind": "hash", "buckets": 64}},
                {
                    "name": "country",
                    "source": "country",
                    "encoding": {"kind": "vocabulary", "values": ["USA", "GBR"], "unknown": -1},
                },
                {"name": "region", "source": "region"},
                {"name": "width", "source": "ad_width"},
                {"name": "floor", "source": "bidfloor"},
                {"name": "campaign", "source": "constant", "value": 7},
                {
                    "name": "domain",
                    "source": "domain_or_bundle",
                    "encoding": {"kind": "hash", "buckets": 1000},
                },
            ],
        }
    )
)

REQUEST = decode_bid_request(
    b'{"id": "r", "imp": [{"id": "1", "banner": {"format": [{"w": 728, "h": 90}]},'
    b' "bidfloor": 0.5},'
    b' {"id": "2", "video": {"mimes": ["video/mp4"], "w": 640, "h": 360}}],'
    b' "app": {"bundle": "com.example.game"},'
    b' "device": {"os": "iOS", "geo": {"country": "GBR", "region": "xx", "utcoffset": 60}}}'
)
# 2023-11-14T22:13:20Z, a Tuesday; one hour later in the user's zone.
NOW = 1_700_000_000.0


def test_one_row_per_impression_in_order() -> None:
    rows = Vectorizer(SPEC).matrix(REQUEST, NOW)
    assert rows.shape == (2, SPEC.width)
    hour, dow, os_bucket, country, region, width, floor, campaign, domain = rows[0]
    assert (hour, dow) == (23, 1)
    assert os_bucket == stable_hash("ios", 64)
    assert country == 1
    assert math.isnan(region)
    assert (width, floor, campaign) == (728, 0.5, 7)
    assert domain == stable_hash("com.example.game", 1000)
    assert rows[1][5] == 640
    assert rows[1][6] == 0


def test_missing_values_are_nan_and_unknown_vocabulary_uses_its_default() -> None:
    bare = decode_bid_request(
        b'{"id": "r", "imp": [{"id": "1", "native": {"request": ""}}],'
        b' "device": {"geo": {"country": "FRA"}}}'
    )
    row = Vectorizer(SPEC).matrix(bare, NOW)[0]
    assert math.isnan(row[2])
    assert math.isnan(row[5])
    assert row[3] == -1


def test_stable_hash_is_the_same_in_another_process() -> None:
    code = "from bidder.features import stable_hash; print(stable_hash('example.com', 4096))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == stable_hash("example.com", 4096)


def test_spec_round_trips_through_json(tmp_path: Path) -> None:
    path = tmp_path / "feature_spec.json"
    path.write_bytes(SPEC.to_json())
    assert FeatureSpec.load(path) == SPEC
    assert SPEC.id == "test@2"


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ([], "no features"),
        ([{"name": "a", "source": "nowhere"}], "unknown source 'nowhere'"),
        ([{"name": "a", "source": "os"}, {"name": "a", "source": "os"}], "duplicate"),
        ([{"name": "a", "source": "constant"}], "`value` goes with source `constant`"),
        ([{"name": "a", "source": "os", "encoding": {"kind": "hash", "buckets": 0}}], ">= 1"),
        ([{"name": "a", "source": "os", "bogus": 1}], "unknown field"),
    ],
)
def test_bad_specs_are_refused(features: list[dict[str, object]], message: str) -> None:
    data = msgspec.json.encode({"name": "bad", "version": "1", "features": features})
    with pytest.raises(FeatureSpecError, match=message):
        FeatureSpec.from_json(data)


def test_width_mismatch_with_the_model_is_refused() -> None:
    with pytest.raises(FeatureSpecError, match="builds 9 features, the model expects 7"):
        SPEC.check_model_width(7)
