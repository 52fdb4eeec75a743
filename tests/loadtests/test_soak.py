"""The memory soak, short: the bidder under load for 20 s stays within its memory bounds."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from loadtests import soak


@pytest.mark.slow
def test_a_short_soak_keeps_the_bidder_within_its_memory_bounds(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    code = soak.main(["--quick", "--out", str(out)])
    report = orjson.loads(out.read_bytes())
    memory = report["memory"]
    assert memory["peak_rss_mb"] <= soak.PEAK_RSS_TARGET_MB, memory
    assert memory["growth"] <= soak.GROWTH_TARGET, (memory, report["rss"])
    assert code == 0
    # The soak really loaded the bidder, and the bidder really answered.
    load = report["load"]
    assert load["completed"] > 0
    assert set(load["statuses"]) <= {"200", "204"}
    assert load["errors"] == {}
    assert report["throughput_rps"] > 0
    # One RSS sample a second, from the start of the load to its end.
    assert len(report["rss"]["samples_mib"]) >= soak.QUICK["duration"] - 1


def test_a_soak_too_short_for_its_windows_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        soak.main(["--duration", "10", "--warmup", "5", "--window", "4"])
    assert exit_.value.code == 2
