"""`bidder loadgen`: synthetic bid traffic at steps and ramps of offered load, reported per
step, against the replay test server (a real HTTP server in a subprocess)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bidder.cli import main
from bidder.traffic.commands import duration, load_phases, ramp, rates
from bidder.traffic.loadgen import Step, Target
from tests.conftest import free_port
from tests.traffic.replay_server import replay_server


@pytest.fixture(scope="module")
def server() -> Iterator[Target]:
    with replay_server() as target:
        yield target


def loadgen(target: Target, tmp_path: Path, *flags: str) -> dict[str, Any]:
    report = tmp_path / "loadgen.json"
    code = main(
        [
            "loadgen",
            *("--target", f"http://{target.authority}"),
            *("--requests", "50", "--report", str(report), "--no-progress"),
            *flags,
        ]
    )
    assert code == 0
    result: dict[str, Any] = orjson.loads(report.read_bytes())
    return result


def test_steps_are_sent_one_after_the_other_and_reported_each(
    server: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = loadgen(server, tmp_path, "--steps", "200,400", "--step-duration", "0.5s")
    assert report["kind"] == "loadgen"
    assert report["sent"] == report["completed"] == 300
    # The replay server answers requests without `ext.reply` with a no-bid.
    assert report["status_counts"] == {"204": 300}
    assert report["errors"] == {}
    first, second = report["steps"]
    assert (first["step"], first["offered_rate"], first["sent"], first["completed"]) == (
        1,
        200.0,
        100,
        100,
    )
    assert (second["step"], second["offered_rate"], second["sent"], second["completed"]) == (
        2,
        400.0,
        200,
        200,
    )
    assert second["start_s"] == 0.5
    assert first["latency_ms"]["count"] == 100
    assert second["statuses"] == {"204": 200}
    printed = capsys.readouterr().out
    assert "per step (latencies in ms):" in printed
    assert "p99.9" in printed


def test_a_ramp_is_reported_in_equal_parts(server: Target, tmp_path: Path) -> None:
    report = loadgen(server, tmp_path, "--ramp", "100:500:1s", "--ramp-steps", "4")
    steps = report["steps"]
    assert [(s["offered_start_rate"], s["offered_end_rate"]) for s in steps] == [
        (100.0, 200.0),
        (200.0, 300.0),
        (300.0, 400.0),
        (400.0, 500.0),
    ]
    # The integral of the rate: 37.5, 62.5, 87.5 and 112.5 requests, rounded.
    assert [s["sent"] for s in steps] == [38, 62, 88, 112]
    assert report["sent"] == report["completed"] == 300
    assert [s["duration_s"] for s in steps] == [0.25] * 4


def test_a_fixed_rate_is_one_step(server: Target, tmp_path: Path) -> None:
    report = loadgen(server, tmp_path, "--rate", "300", "--duration", "500ms")
    assert report["sent"] == report["completed"] == 150
    # One schedule: nothing to report per step.
    assert report["steps"] == []
    assert report["offered_rate"] == 300.0


def test_a_ramp_splits_into_linear_parts() -> None:
    args = argparse.Namespace(
        steps=None, ramp=ramp("1000:20000:30s"), ramp_steps=3, rate=None, duration=10.0
    )
    assert load_phases(args) == [
        Step(1000.0, 10.0, end_rate=7333.333333333333),
        Step(7333.333333333333, 10.0, end_rate=13666.666666666666),
        Step(13666.666666666666, 10.0, end_rate=20000.0),
    ]
    args = argparse.Namespace(steps=rates("2000, 4000,8000"), step_duration=10.0, ramp=None)
    assert load_phases(args) == [Step(2000.0, 10.0), Step(4000.0, 10.0), Step(8000.0, 10.0)]


@pytest.mark.parametrize(
    ("text", "expected"), [("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), ("1.5", 1.5)]
)
def test_durations_take_units(text: str, expected: float) -> None:
    assert duration(text) == expected


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ramp", "1000:20000"], "expected FROM:TO:DURATION"),
        (["--ramp", "1000:x:30s"], "not a rate in '1000:x:30s'"),
        (["--steps", "1000,-5"], "a rate must be >= 0"),
        (["--rate", "100", "--duration", "0s"], "not a duration: '0s'"),
        (["--rate", "100", "--steps", "100"], "not allowed with argument"),
        ([], "one of the arguments --rate --steps --ramp is required"),
        (["--rate", "100", "--target", "http://192.0.2.1:80"], "only targets loopback"),
        (["--rate", "100", "--target", "https://127.0.0.1:80"], "expected http://HOST:PORT"),
    ],
)
def test_bad_flags_are_refused_with_the_reason(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = [] if "--target" in flags else ["--target", "http://127.0.0.1:9"]
    with pytest.raises(SystemExit) as exit_:
        main(["loadgen", *target, *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_rates_that_make_no_request_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["loadgen", "--target", "http://127.0.0.1:9", "--steps", "0,0"])
    assert code == 2
    assert "make no request" in capsys.readouterr().err


def test_a_target_that_answers_nothing_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "down.json"
    code = main(
        [
            *("loadgen", "--target", f"http://127.0.0.1:{free_port()}", "--no-progress"),
            *("--rate", "20", "--duration", "200ms", "--timeout", "0.2", "--requests", "5"),
            *("--report", str(report)),
        ]
    )
    assert code == 1
    errors = orjson.loads(report.read_bytes())["errors"]
    assert errors["refused"] >= 1
    # Every request is accounted for: those that never had a connection timed out.
    assert errors["timeout"] == 4
    assert "refused" in capsys.readouterr().out
