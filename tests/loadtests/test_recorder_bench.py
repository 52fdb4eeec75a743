"""The recorder's microbenchmark, briefly: every mode written, the hand-off timed in reuse."""

from __future__ import annotations

import pytest

from bidder.recording.speedups import compiled
from loadtests import recorder_bench


def test_the_microbenchmark_reports_every_mode_both_hand_offs_and_both_scans(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert recorder_bench.main(["--records", "40", "--repeats", "1"]) == 0
    rows = {
        line.split("|")[1].strip(): float(line.split("|")[2])
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| ") and line.split("|")[2].strip()[:1].isdigit()
    }
    scans = {"widest", "SSE2"} if compiled is not None else set()
    assert rows.keys() == {"keep", "drop", "hash", "declined", "bid", *scans}
    assert all(cost > 0 for cost in rows.values())


def test_the_hand_off_is_timed_in_a_queue_that_never_fills() -> None:
    # Many rounds of many records through the queue's bytes: it wraps, and drops nothing
    # (`put_cost` raises if it did).
    made = recorder_bench.captures(500)
    assert recorder_bench.put_cost(made, rounds=30) > 0
