"""The run report: the schedule warning, the text and the plot's missing dependency."""

from __future__ import annotations

import sys

import pytest

from bidder.traffic.loadgen import LoadResult
from bidder.traffic.report import (
    PlotError,
    build_report,
    render_text,
    require_matplotlib,
    schedule_warning,
)


def finished_run(*, late: int, cap_waits: int = 0) -> LoadResult:
    result = LoadResult(mode="open", duration=1.0, offered_rate=1000.0, connections=4)
    result.sent = 1000
    result.statuses = {200: 250, 204: 750}
    result.late_sends = late
    result.cap_waits = cap_waits
    for n in range(1000):
        result.latency.record(0.0002 + n * 1e-6)
        result.send_lateness.record(0.004 if n < late else 0.0)
    return result


def report_of(result: LoadResult) -> dict[str, object]:
    return build_report(
        result,
        kind="loadgen",
        target="http://127.0.0.1:8000/openrtb2/bid",
        late_threshold=0.001,
        max_late_fraction=0.01,
    )


def test_a_kept_schedule_gives_no_warning() -> None:
    report = report_of(finished_run(late=5))
    assert report["schedule"]["kept"] is True  # type: ignore[index]
    assert schedule_warning(report) is None
    assert report["bid_rate"] == 0.25
    assert report["status_counts"] == {"200": 250, "204": 750}


def test_late_sends_and_cap_waits_are_warned_about_with_their_counts() -> None:
    report = report_of(finished_run(late=50, cap_waits=3))
    warning = schedule_warning(report)
    assert warning is not None
    assert "50 of 1,000 sends (5.00%) went out more than 1 ms late" in warning
    assert "max 4.000 ms)" in warning
    assert "3 requests waited for a connection at the cap (raise --max-connections)" in warning
    text = render_text(report)
    assert "schedule: 50 sends later than 1 ms (5.00%)" in text
    assert "max 4.000 ms" in text
    assert "bid rate: 25.00% of answers" in text


def test_plotting_without_matplotlib_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotError, match="--plot needs matplotlib"):
        require_matplotlib()
