"""The replay's schedule: recorded times scaled by a speed or replaced by a rate, looped
and cut at a duration."""

from __future__ import annotations

import pytest

from bidder.traffic.replay import ReplaySchedule, ScheduleError

TIMES = [0.0, 0.1, 0.15, 0.4, 0.9]  # one pass lasts 0.9 + 0.9 / 4 = 1.125 s


def test_recorded_times_are_kept_at_speed_one() -> None:
    schedule = ReplaySchedule(TIMES)
    assert list(schedule.offsets()) == TIMES
    assert schedule.requests == 5
    assert schedule.duration == pytest.approx(1.125)


def test_speed_divides_the_times() -> None:
    schedule = ReplaySchedule(TIMES, speed=2.0)
    assert list(schedule.offsets()) == pytest.approx([t / 2 for t in TIMES])
    assert schedule.duration == pytest.approx(1.125 / 2)
    slow = ReplaySchedule(TIMES, speed=0.5)
    assert list(slow.offsets()) == pytest.approx([t * 2 for t in TIMES])


def test_a_fixed_rate_ignores_the_recorded_times() -> None:
    schedule = ReplaySchedule(TIMES, rate=100)
    assert list(schedule.offsets()) == pytest.approx([0, 0.01, 0.02, 0.03, 0.04])
    assert schedule.duration == pytest.approx(0.05)


def test_a_duration_cuts_the_replay_short() -> None:
    schedule = ReplaySchedule(TIMES, limit=0.2)
    assert list(schedule.offsets()) == [0.0, 0.1, 0.15]
    assert schedule.duration == 0.2
    # Longer than the records, without a loop: the records end it.
    assert ReplaySchedule(TIMES, limit=60).requests == 5
    assert ReplaySchedule(TIMES, limit=60).duration == pytest.approx(1.125)
    assert ReplaySchedule(TIMES, rate=100, limit=0.025).requests == 3


def test_a_loop_starts_over_one_mean_gap_after_the_last_record() -> None:
    schedule = ReplaySchedule(TIMES, limit=2.5, loop=True)
    offsets = list(schedule.offsets())
    passes = [t + 1.125 for t in TIMES] + [t + 2.25 for t in TIMES if t + 2.25 < 2.5]
    assert offsets == pytest.approx(TIMES + passes)
    assert schedule.requests == len(offsets) == 13
    assert schedule.duration == 2.5
    # The recorded rate holds across the seams: 5 records per 1.125 s.
    fast = ReplaySchedule(TIMES, speed=4.0, limit=2.25, loop=True)
    assert fast.requests == 40
    assert ReplaySchedule(TIMES, rate=10, limit=2.0, loop=True).requests == 20


def test_send_k_carries_record_k_modulo_the_count() -> None:
    # The load generator cycles its templates in order: the schedule must match that.
    schedule = ReplaySchedule(TIMES, limit=3.0, loop=True)
    offsets = list(schedule.offsets())
    for k, offset in enumerate(offsets):
        assert offset == pytest.approx((k // 5) * 1.125 + TIMES[k % 5])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"speed": 0.0}, "speed must be a positive"),
        ({"speed": float("inf")}, "speed must be a positive"),
        ({"rate": -1.0}, "rate must be a positive"),
        ({"limit": 0.0}, "duration must be a positive"),
        ({"loop": True}, "looped replay needs a duration"),
    ],
)
def test_options_that_make_no_schedule_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        ReplaySchedule(TIMES, **kwargs)


def test_records_spanning_no_time_need_a_rate() -> None:
    with pytest.raises(ScheduleError, match="span no time"):
        ReplaySchedule([0.0])
    with pytest.raises(ScheduleError, match="span no time"):
        ReplaySchedule([0.0, 0.0, 0.0], limit=1.0, loop=True)
    assert list(ReplaySchedule([0.0, 0.0], rate=10).offsets()) == [0.0, 0.1]
    with pytest.raises(ScheduleError, match="no record"):
        ReplaySchedule([])
