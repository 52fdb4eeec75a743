"""Replaying recorded traffic: recorded requests, sent again on the recording's own clock.

The send times come from the records' arrival times (`ts`), relative to the first record
and divided by `speed` (2.0 replays twice as fast), or from a fixed `rate`. One pass over
the records lasts their time span plus one mean gap between arrivals, so a looped replay
keeps the recorded rate across the seam. The sends are the load generator's open loop: they
never wait for answers, latency counts from the intended send time, and sends that fall
behind the schedule are counted (see `bidder.traffic.loadgen`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

from bidder.traffic.decisions import DecisionDiff
from bidder.traffic.loadgen import LoadResult, Request, Target, Watcher, run_open_loop
from bidder.traffic.recordings import RecordingSet

BID_PATH = "/openrtb2/bid"


class ScheduleError(ValueError):
    """Replay options that make no schedule; the message says which and why."""


@dataclass(frozen=True)
class ReplaySchedule:
    """When each send of a replay goes out; send `k` carries record `k % len(times)`.

    `times` are the records' arrival times in seconds from the first, ascending. `limit`
    ends the replay after that many seconds; `loop` starts over at the end of the records
    (and needs a `limit`).
    """

    times: Sequence[float]
    speed: float = 1.0
    rate: float | None = None
    limit: float | None = None
    loop: bool = False

    def __post_init__(self) -> None:
        if not self.times:
            raise ScheduleError("there is no record to replay")
        if not (self.speed > 0 and math.isfinite(self.speed)):
            raise ScheduleError(f"the speed must be a positive number, not {self.speed}")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ScheduleError(f"the rate must be a positive number, not {self.rate}")
        if self.limit is not None and not (self.limit > 0 and math.isfinite(self.limit)):
            raise ScheduleError(f"the duration must be a positive number, not {self.limit}")
        if self.loop and self.limit is None:
            raise ScheduleError("a looped replay needs a duration, or it would never end")
        if self.rate is None and self.period == 0:
            raise ScheduleError(
                "the records span no time (one record, or all at one instant): give a rate"
            )

    @cached_property
    def period(self) -> float:
        """Recorded seconds of one pass: the span plus one mean gap between arrivals."""
        count = len(self.times)
        span = self.times[-1] - self.times[0]
        return span + span / (count - 1) if count > 1 else 0.0

    @cached_property
    def pass_length(self) -> float:
        """Seconds one pass over the records takes to send."""
        if self.rate is not None:
            return len(self.times) / self.rate
        return self.period / self.speed

    @cached_property
    def requests(self) -> int:
        count = len(self.times)
        if self.limit is None:
            return count
        if self.rate is not None:
            sends = math.ceil(self.limit * self.rate)
            return sends if self.loop else min(sends, count)
        recorded = self.limit * self.speed
        passes = math.floor(recorded / self.period) if self.loop else 0
        rest = recorded - passes * self.period
        return passes * count + bisect.bisect_left(self.times, rest)

    @cached_property
    def duration(self) -> float:
        if self.limit is None:
            return self.pass_length
        return self.limit if self.loop else min(self.limit, self.pass_length)

    def offsets(self) -> Iterator[float]:
        if self.rate is not None:
            rate = self.rate
            for k in range(self.requests):
                yield k / rate
            return
        times, count, speed, period = self.times, len(self.times), self.speed, self.period
        for k in range(self.requests):
            passes, index = divmod(k, count)
            yield (passes * period + times[index]) / speed


def schedule_for(
    recordings: RecordingSet,
    *,
    speed: float = 1.0,
    rate: float | None = None,
    limit: float | None = None,
    loop: bool = False,
) -> ReplaySchedule:
    first = recordings.requests[0].ts
    times = [request.ts - first for request in recordings.requests]
    return ReplaySchedule(times, speed=speed, rate=rate, limit=limit, loop=loop)


@dataclass(frozen=True)
class SendOptions:
    """Where and how the load generator sends, whatever the requests are."""

    target: Target
    path: str = BID_PATH
    max_connections: int = 512
    request_timeout: float = 5.0
    late_threshold: float = 0.001


async def replay(
    recordings: RecordingSet,
    schedule: ReplaySchedule,
    options: SendOptions,
    *,
    max_examples: int = 5,
    watch: Watcher | None = None,
) -> tuple[LoadResult, DecisionDiff]:
    """Sends the recorded requests on `schedule` and compares each answer with the
    recorded decision."""
    requests = recordings.requests
    templates = [Request("POST", options.path, r.headers, r.body) for r in requests]
    diff = DecisionDiff(
        [r.id for r in requests], [r.decision for r in requests], max_examples=max_examples
    )
    result = await run_open_loop(
        options.target,
        templates,
        rate=[schedule],
        max_connections=options.max_connections,
        request_timeout=options.request_timeout,
        late_threshold=options.late_threshold,
        on_answer=diff.observe,
        watch=watch,
        series=True,
    )
    return result, diff
