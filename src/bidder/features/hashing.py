"""Stable hashing of categorical values.

Python's built-in `hash()` of a string is salted per process, so it would give a model
trained in one process different inputs from the bidder serving it in another. CRC-32 is
stable across processes, machines and languages, and costs well under a microsecond.
The compiled vectorizer (`compiler.py`) writes the same expression out inline, to save a
call per feature; `tests/features` checks that both agree.
"""

from __future__ import annotations

import zlib


def stable_hash(text: str, buckets: int) -> int:
    """The bucket, in `[0, buckets)`, of a categorical value."""
    return zlib.crc32(text.encode("utf-8")) % buckets
