"""The recorder's compiled module, `_speedups` (built from `_speedups.c`), where it exists.

It is optional: where no C compiler was at hand at install, the install went on without it,
and redaction, record encoding and the entries' parts run in Python alone, giving the same
records a few microseconds slower a record. `compiled` is the module, or None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

from bidder.native import optional_module

# The identifier paths as `redaction.py` lays them out for the scanner (see `_speedups.c`).
TreeNodes = tuple[tuple[tuple[bytes, ...], tuple[int, ...], int], ...]
# Edits of a body: (start, end, kind).
Edits = list[tuple[int, int, int]]


class ScannerTree(Protocol):
    """The paths made into the scanner's own form, once (`scanner_tree`): opaque here."""


class RecordRing(Protocol):
    """The hand-off queue's records, copied into one block of memory (`_speedups.c`)."""

    dropped: int

    def __len__(self) -> int: ...

    def put(self, entry: Any) -> bool: ...

    def pop(self, entry_type: type[Any]) -> Any: ...

    def encode(
        self,
        limit: int,
        room: int,
        tree: ScannerTree | None,
        version: int,
        error_reason: bytes,
        hash_key: bytes | None = None,
    ) -> tuple[bytes, int]: ...


# The ring's type by another name, for `Speedups`, whose constructor takes its name.
_Ring = RecordRing


class Speedups(Protocol):
    """The compiled module's functions; `_speedups.c` describes each."""

    def scanner_tree(self, nodes: TreeNodes) -> ScannerTree: ...

    def identifier_edits(self, body: bytes, tree: ScannerTree, hashing: bool) -> Edits | None: ...

    def without_identifiers(
        self, body: bytes, tree: ScannerTree, portable: bool = False
    ) -> bytes | None: ...

    def hmac_sha256(self, key: bytes, message: bytes, portable: bool = False) -> bytes: ...

    def RecordRing(  # noqa: N802 (the compiled type)
        self, capacity_bytes: int, max_records: int, wake: Callable[[], None]
    ) -> _Ring: ...

    def enqueue(
        self,
        ring: _Ring,
        slow_put: Callable[[Any], None],
        names: tuple[bytes, ...],
        gzip_names: tuple[bytes, ...],
        encode_number: Callable[[float], bytes],
        capture: tuple[Any, ...],
    ) -> None: ...


compiled: Final[Speedups | None] = optional_module("bidder.recording._speedups")
