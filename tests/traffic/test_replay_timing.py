"""A replay keeps its schedule: each request goes out when the recording (scaled by
`--speed`, or replaced by `--rate`) says it should, to a real loopback server.

Two measures per request: the sender's own send-time error (how late the request was
written against its schedule: the scheduler's property), and its arrival at the server,
which notes when each request began to arrive on the same monotonic clock as the sender
(arrival minus the replay's start plus the request's offset). The arrival adds the
server's own wake-up, so it checks that nothing goes out early or out of order, and is
printed. The machine running the tests may be shared, and a sender not scheduled on a
core for a few milliseconds misses its time through no fault of the scheduler: so a run
gets up to `ATTEMPTS` tries, the median send-time error must be within 1 ms, and the p90
and p99 too unless the machine had more runnable work than CPUs (its load average): then
they are only printed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bidder.traffic.loadgen import LoadResult, Target, run
from bidder.traffic.recordings import read_recordings
from bidder.traffic.replay import SendOptions, replay, schedule_for
from tests.traffic.recording_files import decision, record, write_recording
from tests.traffic.replay_server import arrivals, replay_server

ATTEMPTS = 3


@pytest.fixture(scope="module")
def server() -> Iterator[Target]:
    with replay_server() as target:
        yield target


def write_requests(path: Path, times: list[float]) -> Path:
    records = [
        record(
            {"id": f"r{n}", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}]},
            ts=1_700_000_000.0 + t,
            status=204,
            decision=decision("no_bid", [("1", None)]),
        )
        for n, t in enumerate(times)
    ]
    return write_recording(path, records)


def replayed(
    server: Target, path: Path, **schedule: float | bool | None
) -> tuple[LoadResult, list[float], list[str | None]]:
    """Replays `path`; the result, the intended send times and the ids sent in order."""
    recordings = read_recordings([path], max_records=100_000)
    plan = schedule_for(recordings, **schedule)  # type: ignore[arg-type]
    arrivals(server)  # forget earlier tests' requests
    result, _ = run(replay(recordings, plan, SendOptions(server)))
    intended = [result.start + offset for offset in plan.offsets()]
    return result, intended, [r.id for r in recordings.requests]


def errors_ms(server: Target, intended: list[float], ids: list[str | None]) -> list[float]:
    """Per arrival, how far (ms) after its intended send time it reached the server; the
    k-th arrival of an id is the k-th send of that id (a looped replay sends it again)."""
    sends: dict[str | None, list[float]] = {}
    for k, moment in enumerate(intended):
        sends.setdefault(ids[k % len(ids)], []).append(moment)
    seen: dict[str | None, int] = {}
    errors = []
    for moment, request_id in sorted(arrivals(server)):
        nth = seen.get(request_id, 0)
        seen[request_id] = nth + 1
        errors.append((moment - sends[request_id][nth]) * 1000)
    assert len(errors) == len(intended)
    return errors


def percentile(values: list[float], percent: float) -> float:
    return sorted(values)[min(len(values) - 1, int(percent / 100 * len(values)))]


# A virtual machine whose hypervisor takes more of its CPU time than this (steal) cannot
# hold a millisecond at the tail, whatever the replay does.
MAX_STOLEN_SHARE = 0.01


def oversubscribed(stolen: float) -> bool:
    """Whether more work wanted a CPU than there are CPUs over the last minute, or the
    hypervisor took more than `MAX_STOLEN_SHARE` of the CPU time (`stolen`) during the run."""
    return os.getloadavg()[0] > (os.cpu_count() or 1) or stolen > MAX_STOLEN_SHARE


def cpu_times() -> list[int]:
    """The machine's CPU time so far, by kind (`/proc/stat`; empty where there is none)."""
    try:
        with open("/proc/stat") as stat:
            return [int(value) for value in stat.readline().split()[1:]]
    except OSError:
        return []


def stolen_share(before: list[int], after: list[int]) -> float:
    """Steal's share of the CPU time between two `cpu_times` (user, nice, system, idle,
    iowait, irq, softirq, steal: steal is the eighth)."""
    spent = [later - earlier for earlier, later in zip(before[:8], after[:8], strict=False)]
    return spent[7] / sum(spent) if len(spent) == 8 and sum(spent) else 0.0


def assert_on_schedule(measure: Callable[[], tuple[LoadResult, list[float]]], label: str) -> None:
    """Send-time errors within 1 ms at the median (and p90 and p99, on a machine not
    oversubscribed) in one of `ATTEMPTS` runs; no request arriving before its time."""
    for attempt in range(1, ATTEMPTS + 1):
        before = cpu_times()
        result, arrival_errors = measure()
        stolen = stolen_share(before, cpu_times())
        # Never early: an open loop does not send before its time.
        assert min(arrival_errors) >= 0
        lateness = result.send_lateness
        median, p90, p99 = (lateness.percentile(p) * 1000 for p in (50.0, 90.0, 99.0))
        busy = oversubscribed(stolen)
        print(
            f"{label}, attempt {attempt}: send-time error median {median:.3f} ms, p90 "
            f"{p90:.3f} ms, p99 {p99:.3f} ms, max {lateness.max * 1000:.3f} ms; arrival "
            f"error median {percentile(arrival_errors, 50):.3f} ms, p90 "
            f"{percentile(arrival_errors, 90):.3f} ms, p99 {percentile(arrival_errors, 99):.3f} ms"
            + f"; CPU stolen by the hypervisor {stolen:.1%}"
            + (" (machine oversubscribed: p90 and p99 not held to 1 ms)" if busy else "")
        )
        if median <= 1.0 and (busy or (p90 <= 1.0 and p99 <= 1.0)):
            return
    raise AssertionError(f"{label}: off schedule in {ATTEMPTS} runs (see the output)")


def test_sends_are_within_a_millisecond_of_schedule_at_2000_per_second(
    server: Target, tmp_path: Path
) -> None:
    # Two seconds of recorded traffic at 2,000 requests/s, with irregular gaps.
    gaps = [0.0001, 0.0009, 0.0003, 0.0007, 0.0005] * 800
    times = [sum(gaps[:k]) for k in range(len(gaps))]
    path = write_requests(tmp_path / "fast.jsonl.gz", times)

    def measure() -> tuple[LoadResult, list[float]]:
        result, intended, ids = replayed(server, path)
        assert result.statuses == {204: 4000}
        return result, errors_ms(server, intended, ids)

    assert_on_schedule(measure, "2,000 req/s")


def test_speed_scales_the_recorded_gaps(server: Target, tmp_path: Path) -> None:
    times = [0.02 * n for n in range(30)]  # 50 requests/s recorded: 0.6 s
    path = write_requests(tmp_path / "slow.jsonl.gz", times)

    def measure() -> tuple[LoadResult, list[float]]:
        result, intended, ids = replayed(server, path, speed=3.0)
        assert result.completed == 30
        # Three times as fast: the intended gaps are the recorded ones / 3.
        assert intended[1] - intended[0] == pytest.approx(0.02 / 3)
        return result, errors_ms(server, intended, ids)

    assert_on_schedule(measure, "speed 3")


def test_a_rate_replaces_the_recorded_times_and_a_loop_sends_again(
    server: Target, tmp_path: Path
) -> None:
    # Recorded over a minute; replayed at 400 requests/s for 0.5 s, looping over 30 records.
    times = [2.0 * n for n in range(30)]
    path = write_requests(tmp_path / "sparse.jsonl.gz", times)

    def measure() -> tuple[LoadResult, list[float]]:
        result, intended, ids = replayed(server, path, rate=400.0, limit=0.5, loop=True)
        assert result.completed == len(intended) == 200
        assert intended[1] - intended[0] == pytest.approx(1 / 400)
        return result, errors_ms(server, intended, ids)

    assert_on_schedule(measure, "rate 400, looped")
