"""Removing user identifiers and IP addresses from recorded requests.

Each identifier is either replaced by a keyed hash (HMAC-SHA256 with a secret key, hex), so
that recordings can still be joined on a user or device without holding the identifier, or
dropped. The locations are those of OpenRTB 2.5 and 2.6, including the extended ids that
2.5 carried in `user.ext.eids` and 2.6 in `user.eids`, and Prebid's per-bidder buyer ids.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any, Final, Literal

RedactionMode = Literal["keep", "hash", "drop"]

_EACH: Final = "*"  # every element of an array, every value of an object
IDENTIFIER_PATHS: Final[tuple[tuple[str, ...], ...]] = (
    ("user", "id"),
    ("user", "buyeruid"),
    ("user", "eids", _EACH, "uids", _EACH, "id"),
    ("user", "ext", "eids", _EACH, "uids", _EACH, "id"),
    ("user", "ext", "prebid", "buyeruids", _EACH),
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


class Redactor:
    """Hashes or drops every identifier of a decoded request, in place.

    In `hash` mode a string or number becomes the hex HMAC-SHA256 of its text under `key`;
    a value of any other type (an object, an array) cannot be hashed meaningfully and is
    dropped.
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
        self.paths = tuple(paths)
        self._mac = hmac.new(key or b"", digestmod=hashlib.sha256)

    def redact(self, document: dict[str, Any]) -> None:
        for path in self.paths:
            self._visit(document, path)

    def hash(self, value: str) -> str:
        mac = self._mac.copy()
        mac.update(value.encode("utf-8"))
        return mac.hexdigest()

    def _visit(self, node: Any, path: tuple[str, ...]) -> None:
        step, rest = path[0], path[1:]
        keys: Iterable[Any]
        if step == _EACH:
            if isinstance(node, list):
                keys = range(len(node))
            elif isinstance(node, dict):
                keys = list(node)
            else:
                return
        elif isinstance(node, dict) and step in node:
            keys = (step,)
        else:
            return
        for key in keys:
            if rest:
                self._visit(node[key], rest)
            else:
                self._replace(node, key)

    def _replace(self, container: Any, key: Any) -> None:
        value = container[key]
        if value is None:
            return
        if self.mode == "hash" and isinstance(value, str | int | float):
            container[key] = self.hash(value if isinstance(value, str) else str(value))
        elif isinstance(container, dict):
            del container[key]
        else:
            container[key] = None
