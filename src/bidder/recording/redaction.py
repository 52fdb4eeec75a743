"""Removing user identifiers and IP addresses from recorded request bodies.

Each identifier is either replaced by a keyed hash (HMAC-SHA256 with a secret key, hex), so
that recordings can still be joined on a user or device without holding the identifier, or
dropped. The locations are those of OpenRTB 2.5 and 2.6, including the extended ids that
2.5 carried in `user.ext.eids` and 2.6 in `user.eids`, and Prebid's per-bidder buyer ids.

Only the objects on the way to an identifier are decoded: the body is read as an object of
raw JSON values, `device` and `user` as objects of raw values in turn, and so on down each
path; every other value is copied as the bytes it was. A request's `device` and `user` are
a small part of it, so redaction costs a fraction of decoding and encoding the whole body.
Two shortcuts keep it cheaper still, both exact:

- a value whose text holds no backslash and none of the keys on its paths (quoted, as JSON
  writes a key without escapes) cannot hold an identifier, and is not decoded at all;
- the body's redacted members are put back in place of their old text, the rest of the body
  kept as it came rather than encoded again, when their places are certain: no backslash in
  the body (so no key is written escaped) and each of their keys once in it (so a duplicate
  member, which a decoder reads as the last one, cannot hide an identifier in the first).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec

RedactionMode = Literal["keep", "hash", "drop"]

EACH: Final = "*"  # every element of an array, every value of an object
IDENTIFIER_PATHS: Final[tuple[tuple[str, ...], ...]] = (
    ("user", "id"),
    ("user", "buyeruid"),
    ("user", "eids", EACH, "uids", EACH, "id"),
    ("user", "ext", "eids", EACH, "uids", EACH, "id"),
    ("user", "ext", "prebid", "buyeruids", EACH),
    ("device", "ifa"),
    ("device", "ip"),
    ("device", "ipv6"),
    # Hashed hardware ids (deprecated in 2.6, still sent): a hash of an id is still an id.
    ("device", "dpidsha1"),
    ("device", "dpidmd5"),
    ("device", "didsha1"),
    ("device", "didmd5"),
    ("device", "macsha1"),
    ("device", "macmd5"),
)

_Raws = dict[str, msgspec.Raw] | list[msgspec.Raw]
_JSON_WHITESPACE: Final = b" \t\n\r"


@dataclass(frozen=True)
class _Level:
    """The paths below one object or array, as the redactor walks them."""

    # Keys that hold an identifier here.
    identifiers: frozenset[str] = frozenset()
    # Keys of the objects and arrays on the way to identifiers further down.
    inner: tuple[tuple[str, _Level], ...] = ()
    # Every element (of an array) or value (of an object) is an identifier, or leads to one.
    each: _Level | Literal["identifier"] | None = None
    # The keys a value must hold to hold an identifier (this level's identifiers and steps,
    # and where every element is visited, their keys), quoted as JSON writes them unescaped;
    # None when any element may be an identifier.
    needles: tuple[bytes, ...] | None = ()


def _level(paths: Iterable[tuple[str, ...]]) -> _Level:
    identifiers: set[str] = set()
    below: dict[str, list[tuple[str, ...]]] = {}
    for path in paths:
        if len(path) == 1:
            identifiers.add(path[0])
        else:
            below.setdefault(path[0], []).append(path[1:])
    each: _Level | Literal["identifier"] | None = None
    if EACH in identifiers:
        identifiers.discard(EACH)
        each = "identifier"
    elif EACH in below:
        each = _level(below.pop(EACH))
    if clash := identifiers & set(below):
        raise ValueError(f"{sorted(clash)}: both an identifier and the way to another")
    inner = tuple((step, _level(rest)) for step, rest in below.items())
    return _Level(frozenset(identifiers), inner, each, _needles(identifiers, inner, each))


def _needles(
    identifiers: set[str],
    inner: tuple[tuple[str, _Level], ...],
    each: _Level | Literal["identifier"] | None,
) -> tuple[bytes, ...] | None:
    # A value changes only when one of this level's keys is in it (the steps' own levels are
    # reached only through them), or, where every element is visited, one of their keys.
    if each == "identifier":
        return None
    found = {msgspec.json.encode(key) for key in identifiers.union(step for step, _ in inner)}
    if each is not None:
        if each.needles is None:
            return None
        found.update(each.needles)
    return tuple(sorted(found))


def one_line(body: bytes) -> bytes:
    """`body`, a JSON text, on one line."""
    # Inside JSON strings line breaks must be escaped, so any raw one is whitespace between
    # tokens: blanking it keeps the body's meaning.
    if b"\n" not in body and b"\r" not in body:
        return body
    return body.replace(b"\n", b" ").replace(b"\r", b" ")


class Redactor:
    """Hashes or drops every identifier of a JSON request body.

    In `hash` mode a string becomes the hex HMAC-SHA256 of its text under `key`, a number
    that of its JSON text; a value of any other type (an object, an array) cannot be hashed
    meaningfully and is dropped. `null` stays `null`.
    """

    def __init__(
        self,
        mode: Literal["hash", "drop"],
        key: bytes | None = None,
        paths: Iterable[tuple[str, ...]] = IDENTIFIER_PATHS,
    ) -> None:
        if mode == "hash" and not key:
            raise ValueError("hash redaction needs a key")
        self.mode = mode
        self._paths = _level(paths)
        self._key = key or b""
        self._object = msgspec.json.Decoder(dict[str, msgspec.Raw])
        self._array = msgspec.json.Decoder(list[msgspec.Raw])
        self._value = msgspec.json.Decoder()
        self._encoder = msgspec.json.Encoder()
        self._quoted = {key: msgspec.json.encode(key) for key, _ in self._paths.inner}

    def redact(self, body: bytes) -> bytes | None:
        """`body` without its identifiers, on one line; None when it is not a JSON object
        (identifiers in it could not be found)."""
        try:
            document = self._object.decode(body)
        except msgspec.DecodeError:
            return None
        level = self._paths
        if b"\\" not in body and not level.identifiers and level.each is None:
            spliced = self._splice(body, document, level)
            if spliced is not None:
                return one_line(spliced)
        self._redact_children(document, level)
        return one_line(self._encoder.encode(document))

    def _splice(self, body: bytes, document: dict[str, msgspec.Raw], level: _Level) -> bytes | None:
        """`body` with its members on the way to identifiers redacted in their places; None
        when a place is not certain (the member's key more than once in the body). The body
        has no backslash: every key in it is written as its `needles` are."""
        changes: list[tuple[int, int, bytes]] = []
        for key, below in level.inner:
            raw = document.get(key)
            if raw is None:
                continue
            value = bytes(raw)
            redacted = self._redacted(value, below)
            if redacted is None:
                continue
            quoted = self._quoted[key]
            if body.count(quoted) != 1:
                return None
            after = body.index(quoted) + len(quoted)
            # The value follows its key's colon: nothing but whitespace comes between, and
            # the value cannot start with either, so this finds the value itself.
            start = body.find(value, after)
            if start < 0 or body[after:start].strip(_JSON_WHITESPACE) != b":":
                return None
            changes.append((start, start + len(value), redacted))
        changes.sort()
        parts: list[bytes] = []
        done = 0
        for start, end, redacted in changes:
            parts += (body[done:start], redacted)
            done = end
        parts.append(body[done:])
        return b"".join(parts)

    def hash(self, value: str) -> str:
        return hmac.digest(self._key, value.encode("utf-8"), "sha256").hex()

    def _redact_children(self, node: _Raws, level: _Level) -> None:
        if isinstance(node, dict):
            for key in level.identifiers.intersection(node):
                self._replace(node, key)
            for key, below in level.inner:
                if key in node:
                    self._redact_inside(node, key, below)
        if level.each is None:
            return
        keys = range(len(node)) if isinstance(node, list) else list(node)
        for index in keys:
            if level.each == "identifier":
                self._replace(node, index)
            else:
                self._redact_inside(node, index, level.each)

    def _redact_inside(self, node: _Raws, key: Any, level: _Level) -> None:
        redacted = self._redacted(node[key], level)
        if redacted is not None:
            node[key] = msgspec.Raw(redacted)

    def _redacted(self, raw: msgspec.Raw | bytes, level: _Level) -> bytes | None:
        """The object or array `raw` without its identifiers; None when it holds none, or is
        neither an object nor an array."""
        if level.needles is not None:
            text = bytes(raw)
            if b"\\" not in text and not any(needle in text for needle in level.needles):
                return None  # none of the keys on the way to an identifier, nor escapes
        child: _Raws
        try:
            # Arrays come only where a path iterates; anything else is read as an object.
            if level.each is not None and bytes(memoryview(raw)[:1]) == b"[":
                child = self._array.decode(raw)
            else:
                child = self._object.decode(raw)
        except msgspec.DecodeError:
            return None  # not an object or array (null, a string, ...): no identifier inside
        self._redact_children(child, level)
        return self._encoder.encode(child)

    def _replace(self, node: _Raws, key: Any) -> None:
        raw = node[key]
        value = self._value.decode(raw)
        if value is None:
            return
        if self.mode == "hash" and isinstance(value, str):
            node[key] = msgspec.Raw(self._encoder.encode(self.hash(value)))
        elif self.mode == "hash" and isinstance(value, int | float) and not isinstance(value, bool):
            node[key] = msgspec.Raw(self._encoder.encode(self.hash(bytes(raw).decode())))
        elif isinstance(node, dict):
            del node[key]
        else:
            node[key] = msgspec.Raw(b"null")
