"""Removing user identifiers and IP addresses from recorded request bodies.

Each identifier is either replaced by a keyed hash (HMAC-SHA256 with a secret key, hex), so
that recordings can still be joined on a user or device without holding the identifier, or
dropped. The locations are those of OpenRTB 2.5 and 2.6, including the extended ids that
2.5 carried in `user.ext.eids` and 2.6 in `user.eids`, and Prebid's per-bidder buyer ids.

A body the bid path has already decoded (so known to be JSON) is redacted by editing its
bytes: the compiled scanner (in `_speedups.c`, built at install where a C compiler is at
hand) finds every identifier in one pass, skipping whatever is off every
path by its brackets alone, and writes the body without them (`drop`), or lists the edits
for the keyed hashes to be joined in here (`hash`): about 2 us a body for `drop`, where
decoding the levels on the way and encoding them again took 7-8, which was half of what
the recorder's writer spent on a record.

Otherwise (the scanner is not built, the body was not decoded, a key on the way to an
identifier is written with escapes) only the objects on the way to an identifier are
decoded: the body is read as an object of raw JSON values, `device` and `user` as objects of
raw values in turn, and so on down each path; every other value is copied as the bytes it
was. Both ways give the same JSON (the tests hold them to it), but for the text of the
levels on the way, which the second writes without spaces and duplicate keys.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec

from bidder.recording.speedups import Edits, ScannerTree, TreeNodes, compiled

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
_LF: Final = ord("\n")
_CR: Final = ord("\r")


@dataclass(frozen=True)
class _Level:
    """The paths below one object or array, as the redactor walks them."""

    # Keys that hold an identifier here.
    identifiers: frozenset[str] = frozenset()
    # Keys of the objects and arrays on the way to identifiers further down.
    inner: tuple[tuple[str, _Level], ...] = ()
    # Every element (of an array) or value (of an object) is an identifier, or leads to one.
    each: _Level | Literal["identifier"] | None = None


# The scanner's codes (see `_speedups.c`).
_NOTHING: Final = -1
_IDENTIFIER: Final = -2
_EDIT_HASH_STRING: Final = 1
_EDIT_HASH_NUMBER: Final = 2
_EDIT_NULL: Final = 3


def _scanner_nodes(top: _Level) -> TreeNodes | None:
    """`top` as the scanner takes it: a tuple of nodes, the top level first; None for paths
    it does not follow (a level where `EACH` stands beside named keys, whose values it
    would treat one way where the decoding redactor treats them both ways)."""
    nodes: list[tuple[tuple[bytes, ...], tuple[int, ...], int]] = []

    def add(level: _Level) -> int | None:
        if level.each is not None and (level.identifiers or level.inner):
            return None
        index = len(nodes)
        nodes.append(((), (), _NOTHING))  # its place, before its children's
        keys = [key.encode() for key in sorted(level.identifiers)]
        targets = [_IDENTIFIER] * len(keys)
        for key, below in level.inner:
            child = add(below)
            if child is None:
                return None
            keys.append(key.encode())
            targets.append(child)
        each = _NOTHING
        if level.each == "identifier":
            each = _IDENTIFIER
        elif level.each is not None:
            child = add(level.each)
            if child is None:
                return None
            each = child
        nodes[index] = (tuple(keys), tuple(targets), each)
        return index

    return None if add(top) is None else tuple(nodes)


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
    return _Level(frozenset(identifiers), inner, each)


def one_line(body: bytes) -> bytes:
    """`body`, a JSON text, on one line."""
    # Inside JSON strings line breaks must be escaped, so any raw one is whitespace between
    # tokens: blanking it keeps the body's meaning.
    # Looked for as byte values, not one-byte strings: a plain scan of the bytes, about 40 ns
    # for a 1 KiB body where a substring search takes 250.
    if _LF not in body and _CR not in body:
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
        nodes = _scanner_nodes(self._paths)
        self._tree: ScannerTree | None = (
            None if compiled is None or nodes is None else compiled.scanner_tree(nodes)
        )
        self._key = key or b""
        self._object = msgspec.json.Decoder(dict[str, msgspec.Raw])
        self._array = msgspec.json.Decoder(list[msgspec.Raw])
        self._value = msgspec.json.Decoder()
        self._encoder = msgspec.json.Encoder()

    @property
    def tree(self) -> ScannerTree | None:
        """When the compiled scanner follows the identifiers' paths, its tree, with which the
        compiled record encoder redacts bodies itself (hashing under `hash_key`)."""
        return self._tree

    @property
    def hash_key(self) -> bytes | None:
        """The HMAC key in `hash` mode; None when identifiers are dropped."""
        return self._key if self.mode == "hash" else None

    def redact(self, body: bytes, *, valid: bool = False) -> bytes | None:
        """`body` without its identifiers, on one line; None when it is not a JSON object
        (identifiers in it could not be found). `valid` says the body is known to be JSON
        (decoded already), which lets the scanner edit it."""
        if valid and self._tree is not None and compiled is not None:
            if self.mode == "drop":
                dropped = compiled.without_identifiers(body, self._tree)
                if dropped is not None:
                    return dropped
            else:
                edits = compiled.identifier_edits(body, self._tree, True)
                if edits is not None:
                    return one_line(self._hashed(body, edits))
        try:
            document = self._object.decode(body)
        except msgspec.DecodeError:
            return None
        self._redact_children(document, self._paths)
        # Only the levels on the way to identifiers are encoded again: values below them keep
        # their text, line breaks between their tokens included.
        return one_line(self._encoder.encode(document))

    def _hashed(self, body: bytes, edits: Edits) -> bytes:
        if not edits:
            return body
        parts: list[bytes] = []
        at = 0
        for start, end, kind in edits:
            parts.append(body[at:start])
            if kind == _EDIT_HASH_STRING:
                parts.append(self._encoder.encode(self.hash(self._value.decode(body[start:end]))))
            elif kind == _EDIT_HASH_NUMBER:
                parts.append(self._encoder.encode(self.hash(body[start:end].decode())))
            elif kind == _EDIT_NULL:
                parts.append(b"null")
            at = end
        parts.append(body[at:])
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
        raw = node[key]
        child: _Raws
        try:
            # Arrays come only where a path iterates; anything else is read as an object.
            if level.each is not None and bytes(memoryview(raw)[:1]) == b"[":
                child = self._array.decode(raw)
            else:
                child = self._object.decode(raw)
        except msgspec.DecodeError:
            return  # not an object or array (null, a string, ...): no identifier inside
        self._redact_children(child, level)
        node[key] = msgspec.Raw(self._encoder.encode(child))

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
