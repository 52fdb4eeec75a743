"""Hostile bid request bodies for the fuzz run, generated from real requests.

Seeds are every request of the OpenRTB corpus beside the project (`../shared/openrtb-corpus/`,
read in place) and the project's synthetic traffic. Each body is a seed put through one
mutation: a value of the wrong type, a key removed or given twice, nesting far past the
limit, huge arrays and numbers, NaN and Infinity, invalid UTF-8, truncation, flipped bytes,
two requests spliced, plain garbage, or nothing at all. Some are gzip-compressed (a few as
gzip bombs: a small body that decompresses far past the limit). A seeded `random.Random`
drives everything, so a seed always yields the same bodies.
"""

from __future__ import annotations

import gzip
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from bidder.traffic.synthetic import generate_bid_requests

ROOT: Final = Path(__file__).resolve().parents[1]
CORPUS: Final = ROOT.parent / "shared" / "openrtb-corpus"
SYNTHETIC_SEEDS: Final = 300

_NUMBER: Final = re.compile(rb"(?<=[:\[,])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_OBJECT_KEY: Final = re.compile(rb'\{\s*"([^"\\]{1,40})"\s*:')
_WRONG_VALUES: Final = [
    "1",
    1,
    1.5,
    -1,
    True,
    None,
    [],
    {},
    [1, "a"],
    {"a": 1},
    "",
    2**31,
    -(2**31) - 1,
    2**63,
]
_HUGE_NUMBERS: Final = [
    b"1e999",
    b"-1e999",
    b"1" + b"0" * 400,
    b"123456789012345678901234567890",
    b"-0",
    b"1e-400",
    b"9" * 100_000,
    b"0.0000000000000000000000000001",
]
_NOT_NUMBERS: Final = [b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf", b"+1", b"0x10", b"01"]
_BAD_UTF8: Final = [
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82",
    b"\x80",
]
_BAD_ESCAPES: Final = [b"\\ud800", b"\\u0000", b"\\x41", b"\\", b"\\uZZZZ", b"\x00", b"\n"]
_NESTING_DEPTHS: Final = [8, 60, 63, 64, 65, 70, 500, 5_000, 200_000]
# Impressions are copies of a whole one (a few hundred bytes each); categories are short.
_IMP_COUNTS: Final = [101, 1_000]
_CATEGORY_COUNTS: Final = [1_000, 50_000]
# Decompresses to 8 MiB of a request id: 32 times the default limit, from about 8 KiB.
GZIP_BOMB: Final = gzip.compress(b'{"id": "' + b"a" * (8 * 1024 * 1024) + b'"}', 9)


@dataclass(frozen=True)
class Body:
    """One generated body: its bytes as sent, how it was made, and whether it is gzipped."""

    data: bytes
    mutation: str
    gzipped: bool = False


def load_seeds(synthetic_seed: int) -> tuple[list[Any], list[bytes]]:
    """The seed requests: parsed where they are JSON, and every one's raw bytes."""
    raw = [path.read_bytes() for path in sorted(CORPUS.rglob("*.json"))]
    raw += [
        orjson.dumps(request)
        for request in generate_bid_requests(SYNTHETIC_SEEDS, seed=synthetic_seed)
    ]
    documents = []
    for data in raw:
        try:
            documents.append(orjson.loads(data))
        except orjson.JSONDecodeError:
            continue
    return documents, raw


class BodyGenerator:
    def __init__(self, rng: random.Random, documents: list[Any], raw: list[bytes]) -> None:
        if not documents or not raw:
            raise ValueError("no seed requests: is the OpenRTB corpus beside the project?")
        self.rng = rng
        self.documents = documents
        self.raw = raw
        self._tree: list[tuple[str, Callable[[Any], bytes]]] = [
            ("wrong_type", self._wrong_type),
            ("missing_key", self._missing_key),
            ("deep_nesting", self._deep_nesting),
            ("huge_array", self._huge_array),
        ]
        self._bytes: list[tuple[str, Callable[[bytes], bytes]]] = [
            ("duplicate_key", self._duplicate_key),
            ("huge_number", self._huge_number),
            ("nan_infinity", self._not_a_number),
            ("invalid_utf8", self._invalid_utf8),
            ("bad_escape", self._bad_escape),
            ("truncated", self._truncated),
            ("byte_flips", self._byte_flips),
            ("spliced", self._spliced),
            ("unchanged", lambda data: data),
        ]

    def next(self) -> Body:
        rng = self.rng
        roll = rng.random()
        if roll < 0.01:
            return Body(GZIP_BOMB, "gzip_bomb", gzipped=True)
        if roll < 0.03:
            return Body(rng.randbytes(rng.randrange(0, 2048)), "garbage")
        if roll < 0.04:
            return Body(
                rng.choice([b"", b"null", b"[]", b"{}", b'"id"', b"0", b" " * 300_000]),
                "degenerate",
            )
        if roll < 0.45:
            mutation, tree_mutation = rng.choice(self._tree)
            data = tree_mutation(orjson.loads(orjson.dumps(rng.choice(self.documents))))
        else:
            mutation, byte_mutation = rng.choice(self._bytes)
            data = byte_mutation(rng.choice(self.raw))
        if rng.random() < 0.1:
            compressed = gzip.compress(data, 1)
            if rng.random() < 0.1:
                compressed = compressed[: rng.randrange(len(compressed))]
            return Body(compressed, mutation, gzipped=True)
        return Body(data, mutation)

    # --- mutations of the parsed request ---

    def _wrong_type(self, document: Any) -> bytes:
        parent, key = self._pick(document)
        if parent is None:
            return orjson.dumps(self.rng.choice(_WRONG_VALUES))
        parent[key] = self.rng.choice([value for value in _WRONG_VALUES if value != parent[key]])
        return orjson.dumps(document)

    def _missing_key(self, document: Any) -> bytes:
        objects = [
            (parent, key) for parent, key in self._nodes(document) if isinstance(parent, dict)
        ]
        if objects:
            parent, key = self.rng.choice(objects)
            del parent[key]
        return orjson.dumps(document)

    def _deep_nesting(self, document: Any) -> bytes:
        depth = self.rng.choice(_NESTING_DEPTHS)
        nested = b"[" * depth + b"]" * depth
        head = orjson.dumps(document)
        if head.startswith(b"{") and len(head) > 2:
            return b'{"ext": ' + nested + b", " + head[1:]
        return nested

    def _huge_array(self, document: Any) -> bytes:
        if isinstance(document, dict) and document.get("imp") and self.rng.random() < 0.5:
            imp = document["imp"][0]
            document["imp"] = [
                {**imp, "id": str(index)} if isinstance(imp, dict) else imp
                for index in range(self.rng.choice(_IMP_COUNTS))
            ]
        elif isinstance(document, dict):
            document["bcat"] = [f"IAB{index}" for index in range(self.rng.choice(_CATEGORY_COUNTS))]
        return orjson.dumps(document)

    def _nodes(self, document: Any) -> list[tuple[Any, Any]]:
        """(container, key or index) of every value in the tree, breadth first, up to 500."""
        nodes: list[tuple[Any, Any]] = []
        queue = [document] if isinstance(document, dict | list) else []
        while queue and len(nodes) < 500:
            container = queue.pop(0)
            items = container.items() if isinstance(container, dict) else enumerate(container)
            for key, value in items:
                nodes.append((container, key))
                if isinstance(value, dict | list):
                    queue.append(value)
        return nodes

    def _pick(self, document: Any) -> tuple[Any, Any]:
        nodes = self._nodes(document)
        return self.rng.choice(nodes) if nodes else (None, None)

    # --- mutations of the bytes ---

    def _duplicate_key(self, data: bytes) -> bytes:
        keys = list(_OBJECT_KEY.finditer(data))
        if not keys:
            return data
        key = self.rng.choice(keys)
        value = orjson.dumps(self.rng.choice(_WRONG_VALUES))
        insert = key.start() + 1
        return data[:insert] + b'"' + key.group(1) + b'": ' + value + b", " + data[insert:]

    def _replace_number(self, data: bytes, replacements: list[bytes]) -> bytes:
        numbers = list(_NUMBER.finditer(data))
        if not numbers:
            return data + self.rng.choice(replacements)
        number = self.rng.choice(numbers)
        return data[: number.start()] + self.rng.choice(replacements) + data[number.end() :]

    def _huge_number(self, data: bytes) -> bytes:
        return self._replace_number(data, _HUGE_NUMBERS)

    def _not_a_number(self, data: bytes) -> bytes:
        return self._replace_number(data, _NOT_NUMBERS)

    def _inside_a_string(self, data: bytes, insert: list[bytes]) -> bytes:
        quotes = [index for index, byte in enumerate(data) if byte == 0x22]
        at = self.rng.choice(quotes) + 1 if quotes else self.rng.randrange(len(data) + 1)
        return data[:at] + self.rng.choice(insert) + data[at:]

    def _invalid_utf8(self, data: bytes) -> bytes:
        return self._inside_a_string(data, _BAD_UTF8)

    def _bad_escape(self, data: bytes) -> bytes:
        return self._inside_a_string(data, _BAD_ESCAPES)

    def _truncated(self, data: bytes) -> bytes:
        return data[: self.rng.randrange(len(data) + 1)]

    def _byte_flips(self, data: bytes) -> bytes:
        flipped = bytearray(data)
        for _ in range(self.rng.randint(1, 5)):
            if flipped:
                flipped[self.rng.randrange(len(flipped))] = self.rng.randrange(256)
        return bytes(flipped)

    def _spliced(self, data: bytes) -> bytes:
        other = self.rng.choice(self.raw)
        return (
            data[: self.rng.randrange(len(data) + 1)] + other[self.rng.randrange(len(other) + 1) :]
        )
