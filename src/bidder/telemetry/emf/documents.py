"""CloudWatch embedded metric format (EMF) documents for one reporting interval.

A document is one JSON object: an `_aws` envelope with a millisecond `Timestamp` and one
metric directive (namespace, dimension sets, metric names and units), then every dimension
and metric value as a root member. Counts are sums over the interval; a distribution is
`{"Values", "Counts", "Min", "Max", "Count", "Sum"}` with at most `MAX_VALUES` distinct
values, so a wider one is spread over several documents, each a valid distribution of its
own that CloudWatch merges with the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

# Per metric, per document (the EMF specification's limit for value arrays).
MAX_VALUES: Final = 100
# Per directive, by the same specification.
MAX_METRICS: Final = 100


@dataclass(frozen=True)
class Directive:
    """What every document of a reporter declares: where the metrics go and under which
    dimension sets (each a list of root-member names)."""

    namespace: str
    dimension_sets: tuple[tuple[str, ...], ...]


@dataclass
class Interval:
    """One interval's values for one combination of dimension values."""

    dimensions: Mapping[str, str]
    counts: dict[str, tuple[str, float]] = field(default_factory=dict)
    # name -> (unit, {value: count}), values already rounded and in the reported unit.
    distributions: dict[str, tuple[str, dict[float, int]]] = field(default_factory=dict)

    def add_count(self, name: str, unit: str, amount: float) -> None:
        previous = self.counts.get(name, (unit, 0.0))[1]
        self.counts[name] = (unit, previous + amount)

    def add_values(self, name: str, unit: str, values: Mapping[float, int]) -> None:
        histogram = self.distributions.setdefault(name, (unit, {}))[1]
        for value, count in values.items():
            histogram[value] = histogram.get(value, 0) + count


def significant(value: float, digits: int = 4) -> float:
    """`value` rounded to `digits` significant digits: well below the buckets' own spacing,
    and short in JSON."""
    return float(f"{value:.{digits - 1}e}")


def render(directive: Directive, interval: Interval, timestamp_ms: int) -> list[bytes]:
    """The documents of one interval: the first carries every count and the first
    `MAX_VALUES` values of each distribution, the next ones the rest of the values."""
    chunks = {
        name: (unit, _chunks(sorted(values.items())))
        for name, (unit, values) in interval.distributions.items()
        if any(values.values())
    }
    documents = []
    rounds = max((len(parts) for _, parts in chunks.values()), default=1)
    for round_ in range(rounds):
        members: dict[str, Any] = {}
        units: dict[str, str] = {}
        if round_ == 0:
            for name, (unit, total) in interval.counts.items():
                members[name] = total
                units[name] = unit
        for name, (unit, parts) in chunks.items():
            if round_ < len(parts):
                members[name] = _distribution(parts[round_])
                units[name] = unit
        documents.append(_document(directive, interval.dimensions, timestamp_ms, members, units))
    return documents


def _chunks(pairs: Sequence[tuple[float, int]]) -> list[Sequence[tuple[float, int]]]:
    pairs = [(value, count) for value, count in pairs if count]
    return [pairs[start : start + MAX_VALUES] for start in range(0, len(pairs), MAX_VALUES)]


def _distribution(pairs: Sequence[tuple[float, int]]) -> dict[str, Any]:
    values = [value for value, _ in pairs]
    counts = [count for _, count in pairs]
    return {
        "Values": values,
        "Counts": counts,
        "Min": values[0],
        "Max": values[-1],
        "Count": sum(counts),
        # From the reported values, so that Min <= Sum/Count <= Max holds exactly.
        "Sum": significant(sum(value * count for value, count in pairs), 12),
    }


def _document(
    directive: Directive,
    dimensions: Mapping[str, str],
    timestamp_ms: int,
    members: Mapping[str, Any],
    units: Mapping[str, str],
) -> bytes:
    if len(units) > MAX_METRICS:
        raise ValueError(f"{len(units)} metrics in one directive; EMF allows {MAX_METRICS}")
    body: dict[str, Any] = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": directive.namespace,
                    "Dimensions": [list(names) for names in directive.dimension_sets],
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit in units.items()],
                }
            ],
        },
        **dimensions,
        **members,
    }
    return orjson.dumps(body)
