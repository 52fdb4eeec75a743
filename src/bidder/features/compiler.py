"""A feature spec compiled into one Python function that builds a request's rows.

Interpreting a spec per request (a loop over features, an extractor and an encoder call
for each) costs a few hundred nanoseconds per feature in calls alone. The spec is fixed
for the life of a model, so it is turned once into straight-line code: each column is a
local variable computed by its source's expression and its encoding's inline form, the
request-level ones once, the impression-level ones in the loop over impressions.

The generated text is assembled only from this package's own templates (the expressions
in `bidder.features.sources`, the encodings below) and column numbers; every value taken
from the spec (hash buckets, vocabularies, constants) reaches the function as an object in
its namespace, never as text, so a spec cannot inject code.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from typing import Any

from bidder.features.sources import HELPERS, LOCAL_NEEDS, LOCALS, SOURCES, Local, Source, Value
from bidder.features.spec import (
    Encoding,
    Feature,
    FeatureSpec,
    HashEncoding,
    NumericEncoding,
    VocabularyEncoding,
)
from bidder.openrtb.model import BidRequest

RowsFunction = Callable[[BidRequest, float], list[list[float]]]

_IMP_LOCALS: frozenset[Local] = frozenset({"size"})


def encode_numeric(value: Value) -> float:
    """A value read as a number: numeric strings parsed; anything else, or not finite, NaN."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return math.nan
    else:
        number = float(value)
    return number if math.isfinite(number) else math.nan


def _encoded(column: int, source: Source, encoding: Encoding, names: dict[str, Any]) -> str:
    """The statement that sets column `column` from `value`, the source's raw value."""
    target = f"c{column}"
    as_text = "value" if source.kind == "str?" else "str(value)"
    if isinstance(encoding, HashEncoding):
        names[f"buckets{column}"] = encoding.buckets
        # `stable_hash` written out: its call would cost as much as the hashing.
        return (
            f"{target} = NAN if value is None"
            f" else float(crc32({as_text}.encode('utf-8')) % buckets{column})"
        )
    if isinstance(encoding, VocabularyEncoding):
        names[f"index{column}"] = {text: float(at) for at, text in enumerate(encoding.values)}
        names[f"unknown{column}"] = encoding.unknown
        return f"{target} = NAN if value is None else index{column}.get({as_text}, unknown{column})"
    assert isinstance(encoding, NumericEncoding)
    if source.kind == "int":
        return f"{target} = float(value)"
    if source.kind == "int?":
        return f"{target} = NAN if value is None else float(value)"
    if source.kind == "float":
        return f"{target} = float(value) if isfinite(value) else NAN"
    return f"{target} = encode_numeric(value)"


def _locals_needed(features: list[Feature]) -> list[Local]:
    needed: set[Local] = set()
    pending = [need for feature in features for need in SOURCES[feature.source].needs]
    while pending:
        local = pending.pop()
        if local not in needed:
            needed.add(local)
            pending.extend(LOCAL_NEEDS[local])
    return [local for local in LOCALS if local in needed]  # in dependency order


def generate(spec: FeatureSpec) -> tuple[str, dict[str, Any]]:
    """The source of `rows(request, now)` for `spec`, and the namespace it runs in."""
    names: dict[str, Any] = {
        **HELPERS,
        "NAN": math.nan,
        "isfinite": math.isfinite,
        "crc32": zlib.crc32,
        "encode_numeric": encode_numeric,
    }
    request_lines: list[str] = []
    imp_lines: list[str] = []
    for local in _locals_needed(spec.features):
        lines = imp_lines if local in _IMP_LOCALS else request_lines
        lines.append(f"{local} = {LOCALS[local]}")
    for column, feature in enumerate(spec.features):
        source = SOURCES[feature.source]
        if source.scope == "constant":
            names[f"constant{column}"] = feature.value
            request_lines.append(f"c{column} = constant{column}")
            continue
        lines = request_lines if source.scope == "request" else imp_lines
        lines.append(f"value = {source.expression}")
        lines.append(_encoded(column, source, feature.encoding, names))
    row = ", ".join(f"c{column}" for column in range(spec.width))
    text = "\n".join(
        [
            "def rows(request, now):",
            *(f"    {line}" for line in request_lines),
            "    built = []",
            "    for imp in request.imp or ():",
            *(f"        {line}" for line in imp_lines),
            f"        built.append([{row}])",
            "    return built",
        ]
    )
    return text + "\n", names


def compile_rows_function(spec: FeatureSpec) -> tuple[RowsFunction, str]:
    """`rows(request, now)` for `spec`, and its source (for reading and debugging)."""
    text, names = generate(spec)
    code = compile(text, "<bidder.features compiled spec>", "exec")
    exec(code, names)  # noqa: S102 - our own templates; spec values are namespace objects
    function: RowsFunction = names["rows"]
    return function, text
