# The compiled module of `_speedups.c`; see its comments for the tree's and edits' form.
from typing import Any

_Tree = tuple[tuple[tuple[bytes, ...], tuple[int, ...], int], ...]

def identifier_edits(
    body: bytes, tree: _Tree, hashing: bool
) -> list[tuple[int, int, int]] | None: ...
def without_identifiers(body: bytes, tree: _Tree) -> bytes | None: ...
def encode_records(
    entries: list[Any],
    start: int,
    end: int,
    room: int,
    tree: _Tree | None,
    version: int,
    error_reason: bytes,
) -> tuple[bytes, int]: ...
