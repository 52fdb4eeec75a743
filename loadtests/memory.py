"""A process's memory as Linux reports it in `/proc/<pid>/status`, sampled while it serves.

`VmRSS` is the resident set now; `VmHWM` (the high-water mark) is the most it has ever
been, kept by the kernel, so a peak between two samples is not missed.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


def _status_kib(pid: int, key: str) -> int:
    prefix = f"{key}:"
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(prefix):
            return int(line.split()[1])
    raise LookupError(f"/proc/{pid}/status has no {key}")


def rss_bytes(pid: int) -> int:
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    return _status_kib(pid, "VmHWM") * 1024


@dataclass
class RssSampler:
    """Samples a process's RSS every `interval` seconds until stopped."""

    pid: int
    interval: float = 1.0
    # (seconds since the start, RSS in bytes)
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        start = time.monotonic()
        while True:
            self.samples.append((time.monotonic() - start, rss_bytes(self.pid)))
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
            except TimeoutError:
                continue
            return

    def stop(self) -> None:
        self._stop.set()

    def window_median(self, start: float, end: float) -> float | None:
        """Median RSS of the samples taken in `[start, end)` seconds, if any."""
        values = [rss for at, rss in self.samples if start <= at < end]
        return statistics.median(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {"samples_mib": [[round(at, 1), round(rss / MIB, 1)] for at, rss in self.samples]}
