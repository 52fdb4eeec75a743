"""A checker of CloudWatch embedded metric format (EMF) documents, after the specification:
every document the bidder emits goes through `check_document` in the tests."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Final

import orjson

MAX_DOCUMENT_BYTES: Final = 1024 * 1024
MAX_DIMENSIONS_PER_SET: Final = 30
MAX_METRICS_PER_DIRECTIVE: Final = 100
MAX_VALUES: Final = 100
UNITS: Final = frozenset(
    {
        *("Seconds", "Microseconds", "Milliseconds", "Percent", "Count", "None"),
        *("Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes"),
        *("Bits", "Kilobits", "Megabits", "Gigabits", "Terabits"),
        *("Bytes/Second", "Kilobytes/Second", "Megabytes/Second"),
        *("Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second"),
        *("Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second"),
    }
)
# 2020-01-01 and 2100-01-01 in milliseconds: a Timestamp in seconds would fail the first.
PLAUSIBLE_MILLISECONDS: Final = (1_577_836_800_000, 4_102_444_800_000)


def check_document(line: bytes) -> dict[str, Any]:
    """Assert that `line` is one valid EMF document; return it parsed."""
    assert len(line) <= MAX_DOCUMENT_BYTES, f"document of {len(line)} bytes"
    document = orjson.loads(line)
    assert isinstance(document, dict)
    metadata = document["_aws"]
    assert isinstance(metadata, dict)
    timestamp = metadata["Timestamp"]
    assert isinstance(timestamp, int)
    assert PLAUSIBLE_MILLISECONDS[0] < timestamp < PLAUSIBLE_MILLISECONDS[1], timestamp
    directives = metadata["CloudWatchMetrics"]
    assert isinstance(directives, list)
    assert directives, "CloudWatchMetrics is empty"
    for directive in directives:
        _check_directive(directive, document)
    return document


def _check_directive(directive: dict[str, Any], root: dict[str, Any]) -> None:
    namespace = directive["Namespace"]
    assert isinstance(namespace, str)
    assert 1 <= len(namespace) <= 255
    assert namespace.strip()
    assert namespace.isascii()
    dimension_sets = directive["Dimensions"]
    assert isinstance(dimension_sets, list)
    for dimension_set in dimension_sets:
        assert isinstance(dimension_set, list)
        assert len(dimension_set) <= MAX_DIMENSIONS_PER_SET
        for name in dimension_set:
            assert isinstance(name, str)
            assert 1 <= len(name) <= 255
            assert not name.startswith(":")
            value = root[name]  # every dimension is a root member ...
            assert isinstance(value, str)  # ... whose value is a string
            assert 1 <= len(value) <= 1024
            assert value.isascii()
            assert value.strip()
    metrics = directive["Metrics"]
    assert isinstance(metrics, list)
    assert 1 <= len(metrics) <= MAX_METRICS_PER_DIRECTIVE
    names = [metric["Name"] for metric in metrics]
    assert len(set(names)) == len(names), "a metric named twice"
    for metric in metrics:
        assert set(metric) <= {"Name", "Unit", "StorageResolution"}
        name = metric["Name"]
        assert isinstance(name, str)
        assert 1 <= len(name) <= 255
        assert name.strip()
        assert metric.get("Unit", "None") in UNITS
        assert metric.get("StorageResolution", 60) in (1, 60)
        _check_value(name, root[name])


def _check_value(name: str, value: Any) -> None:
    if isinstance(value, dict):
        values, counts = value["Values"], value["Counts"]
        assert 1 <= len(values) <= MAX_VALUES, f"{name}: {len(values)} values"
        assert len(counts) == len(values), f"{name}: Counts and Values differ in length"
        _check_numbers(name, values)
        _check_numbers(name, counts)
        assert all(count > 0 for count in counts)
        assert len(set(values)) == len(values), f"{name}: a value given twice"
        assert value["Count"] == sum(counts)
        assert value["Min"] == min(values)
        assert value["Max"] == max(values)
        assert value["Min"] * value["Count"] <= value["Sum"] * (1 + 1e-9)
        assert value["Sum"] <= value["Max"] * value["Count"] * (1 + 1e-9)
    elif isinstance(value, list):
        assert 1 <= len(value) <= MAX_VALUES
        _check_numbers(name, value)
    else:
        _check_numbers(name, [value])


def _check_numbers(name: str, numbers: Iterable[Any]) -> None:
    for number in numbers:
        assert isinstance(number, int | float), (name, number)
        assert not isinstance(number, bool), (name, number)
        assert math.isfinite(number), (name, number)


def merged_distribution(documents: Iterable[dict[str, Any]], name: str) -> dict[float, int]:
    """The value -> count pairs of one distribution, over every document carrying it."""
    merged: dict[float, int] = {}
    for document in documents:
        part = document.get(name)
        if part is None:
            continue
        for value, count in zip(part["Values"], part["Counts"], strict=True):
            merged[value] = merged.get(value, 0) + count
    return merged


def percentile(distribution: dict[float, int], fraction: float) -> float:
    """The nearest-rank percentile of a value -> count distribution."""
    total = sum(distribution.values())
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for value in sorted(distribution):
        seen += distribution[value]
        if seen >= rank:
            return value
    raise AssertionError("empty distribution")


def raw_percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]
