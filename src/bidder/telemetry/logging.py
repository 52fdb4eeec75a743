"""Structured JSON logs, and a throttle so that errors on the bid path cannot flood them."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        document.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _RESERVED and not key.startswith("_")
        )
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Access logs would be one line per bid request: never on the hot path.
    logging.getLogger("uvicorn.access").disabled = True


class Throttle:
    """Lets at most `limit` events per key through in each `interval` seconds (a window that
    starts with the first event let through) and counts the rest, so that an error repeated
    on every bid request becomes a few sampled log lines, not a flood."""

    def __init__(
        self, interval: float = 1.0, limit: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if interval <= 0 or limit < 1:
            raise ValueError("Throttle needs interval > 0 and limit >= 1")
        self.interval = interval
        self.limit = limit
        self._clock = clock
        # key -> (start of its window, events let through in it)
        self._windows: dict[str, tuple[float, int]] = {}
        self.suppressed: dict[str, int] = {}

    def allow(self, key: str) -> bool:
        now = self._clock()
        started, allowed = self._windows.get(key, (-math.inf, 0))
        if now - started >= self.interval:
            self._windows[key] = (now, 1)
            return True
        if allowed < self.limit:
            self._windows[key] = (started, allowed + 1)
            return True
        self.suppressed[key] = self.suppressed.get(key, 0) + 1
        return False

    def take_suppressed(self, key: str) -> int:
        """How many events of `key` were held back since this was last asked (for the next
        line let through to report)."""
        return self.suppressed.pop(key, 0)


class SampledLog:
    """Log lines of recurring kinds (a rejected request, a model failure), at most `limit`
    per kind in each `interval` seconds; each line carries its `kind` and how many of that
    kind were held back before it (`suppressed`)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float,
        limit: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._throttle = Throttle(interval, limit, clock)

    def log(
        self,
        level: int,
        kind: str,
        message: str,
        extra: dict[str, Any] | None = None,
        *,
        exc_info: bool | BaseException = False,
    ) -> None:
        if not self._logger.isEnabledFor(level) or not self._throttle.allow(kind):
            return
        fields = {**(extra or {}), "kind": kind, "suppressed": self._throttle.take_suppressed(kind)}
        self._logger.log(level, message, extra=fields, exc_info=exc_info)
